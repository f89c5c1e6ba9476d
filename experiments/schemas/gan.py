"""The train-gan task: its model and optim sections are the core's `GanSettings` / `GanOptimSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from experiments.schemas.evaluation import CoverageSizesConfig
from pose_prior.priors.gan.settings import GanOptimSettings, GanSettings


@dataclass
class SampleImagesConfig:
    """Pictures of sampled bodies logged every `every_n_epochs`."""

    num_bodies: int = 8
    every_n_epochs: int = 1


@dataclass
class TrainGanConfig:
    task: str = "train-gan"
    output_dir: str = "outputs/runs/gan"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # clear a used output_dir first (else a non-empty one is refused without resume)
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    model: GanSettings = field(default_factory=GanSettings)
    optim: GanOptimSettings = field(default_factory=GanOptimSettings)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    samples: SampleImagesConfig = field(default_factory=SampleImagesConfig)
    coverage: CoverageSizesConfig = field(default_factory=CoverageSizesConfig)  # recall/precision callback (off: 0)
