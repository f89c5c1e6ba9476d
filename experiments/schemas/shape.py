"""The train-shape-gan task (GAN-beta, GAN-theta-beta; paper supplement D): shape data, the model section
(the core's `ShapeGanSettings`), GAN-S's optimiser, and the shape coverage computed at the end of a run."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig, config_dataclass
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from pose_prior.priors.gan.settings import GanOptimSettings
from pose_prior.priors.shape.settings import ShapeGanSettings

ShapeGanModelConfig = config_dataclass(ShapeGanSettings, "ShapeGanModelConfig")


@dataclass
class ShapeDataConfig(AmassDataConfig):
    """AMASS (poses, for GAN-theta-beta) as in train-gan, plus the shape source.

    shapes_source: `open` = the shipped open shape set (the open body model's betas); `surreal` =
    SURREAL's smpl_data.npz at `shapes_path` (CAESAR fits; `shapes_gender` male / female / both);
    `amass` = one body per subject of the AMASS tree at `shapes_path` (first 10 of its betas)."""

    shapes_source: Literal["open", "surreal", "amass"] = "open"
    shapes_path: Optional[str] = None
    shapes_gender: Literal["male", "female", "both"] = "both"
    shapes_seed: int = 0  # the seeded train/valid/test split of the shapes
    shapes_valid_fraction: float = 0.1
    shapes_test_fraction: float = 0.1


@dataclass
class ShapeCoverageConfig:
    """Shape recall / precision (Eq. 5, zero pose) of the trained prior and of betas ~ N(0, I) on a split."""

    at_end: bool = True
    split: Literal["train", "valid", "test"] = "test"
    num_generated: int = 10_000
    seed: int = 0
    chunk_size: int = 1024


@dataclass
class TrainShapeGanConfig:
    task: str = "train-shape-gan"
    output_dir: str = "outputs/runs/gan_beta"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    data: ShapeDataConfig = field(default_factory=ShapeDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    model: ShapeGanModelConfig = field(default_factory=ShapeGanModelConfig)  # type: ignore[valid-type]
    optim: GanOptimSettings = field(default_factory=GanOptimSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    shape_coverage: ShapeCoverageConfig = field(default_factory=ShapeCoverageConfig)
