"""Schemas of the prior evaluations: eval-coverage, eval-interp and compare (registered in TASK_SCHEMAS)."""
# ruff: noqa: UP006

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - omegaconf structured configs

from experiments.schema import (
    TASK_SCHEMAS,
    AmassDataConfig,
    BodyModelConfig,
    CoverageSizesConfig,
    DemoDataConfig,
    LoggerConfig,
    TrainerConfig,
)


@dataclass
class InterpolationSizesConfig:
    """Interpolation smoothness (paper Sec. 4.2): seeded test pairs, meshes per path, inversion settings."""

    num_pairs: int = 100
    steps: int = 11  # meshes per path including both endpoints (n = steps - 1 transitions)
    seed: int = 0
    batch_size: int = 32  # pairs inverted at once
    invert: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of prior.invert
    every_n_epochs: int = 0


@dataclass
class EvalTrainerConfig(TrainerConfig):
    """Devices / strategy for the evaluation (DDP shards the generated bodies across processes)."""

    progress_bar: bool = False


@dataclass
class EvalCoverageConfig:
    task: str = "eval-coverage"
    prior: Optional[str] = None  # prior.pt of any registered kind (gan, vposer, gmm, ...)
    output_dir: str = "outputs/eval/coverage"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    coverage: CoverageSizesConfig = field(default_factory=CoverageSizesConfig)
    trainer: EvalTrainerConfig = field(default_factory=EvalTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


@dataclass
class EvalInterpConfig:
    task: str = "eval-interp"
    prior: Optional[str] = None
    output_dir: str = "outputs/eval/interpolation"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    interpolation: InterpolationSizesConfig = field(default_factory=InterpolationSizesConfig)
    trainer: EvalTrainerConfig = field(default_factory=EvalTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


@dataclass
class CompareTrainConfig:
    """With no priors given: the small priors `compare` trains (or reuses) on the embedded default."""

    run_dir: str = "outputs/compare/priors"  # <run_dir>/<name>/prior.pt
    kinds: List[str] = field(default_factory=lambda: ["gan_s", "gan_u", "gan_n", "vposer", "gmm"])
    overrides: Dict[str, List[str]] = field(default_factory=dict)  # per kind: extra key=value overrides
    reuse: bool = True  # keep an existing <run_dir>/<name>/prior.pt


@dataclass
class CompareConfig:
    task: str = "compare"
    priors: List[str] = field(default_factory=list)  # prior.pt paths; empty = train the small priors below
    names: List[str] = field(default_factory=list)  # row labels (default: from the path)
    output_dir: str = "outputs/eval/compare"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    coverage: CoverageSizesConfig = field(default_factory=CoverageSizesConfig)
    interpolation: InterpolationSizesConfig = field(default_factory=InterpolationSizesConfig)
    train: CompareTrainConfig = field(default_factory=CompareTrainConfig)
    trainer: EvalTrainerConfig = field(default_factory=EvalTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


EVAL_TASK_SCHEMAS: Dict[str, Any] = {
    "eval-coverage": EvalCoverageConfig,
    "eval-interp": EvalInterpConfig,
    "compare": CompareConfig,
}
TASK_SCHEMAS.update(EVAL_TASK_SCHEMAS)
