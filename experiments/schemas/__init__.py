"""Dataclass schemas the experiment YAMLs are validated against, one module per subject.

Imports point one way only: `common` <- `data` <- `evaluation` <- `gan`; `baselines`, `h36m` and
`regression` use `common` / `data`. Nothing here imports `experiments.tasks`, which pairs each task's
top-level schema with its runner.
"""
