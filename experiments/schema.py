"""AMASS split defaults, for callers outside `experiments/` that still import them from here.

The schemas live in `experiments/schemas/` (this one in `experiments.schemas.data`); the task table
in `experiments/tasks.py`.
"""

from experiments.schemas.data import DEFAULT_ALIASES, DEFAULT_SPLITS

__all__ = ["DEFAULT_ALIASES", "DEFAULT_SPLITS"]
