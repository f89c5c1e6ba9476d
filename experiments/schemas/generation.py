"""The eval-generation and eval-ik tasks: the generation and 3D-joint IK benchmarks other pose priors publish."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, config_dataclass
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from experiments.schemas.evaluation import EvalTrainerConfig, GenerationSettingsConfig
from pose_prior.fitting.joints3d_fit import Joints3DFitSettings


@dataclass
class EvalGenerationConfig:
    task: str = "eval-generation"
    prior: Optional[str] = None  # a prior.pt (PRIOR=...)
    priors: List[str] = field(default_factory=list)  # or several
    output_dir: str = "outputs/eval/generation"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    generation: GenerationSettingsConfig = field(default_factory=GenerationSettingsConfig)
    trainer: EvalTrainerConfig = field(default_factory=EvalTrainerConfig)  # devices: DDP shares the sampling
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# The fitting section is `Joints3DFitSettings` itself: one home for every setting.
IKFittingConfig = config_dataclass(Joints3DFitSettings, "IKFittingConfig")


@dataclass
class IKBenchmarkConfig:
    """Which test poses and tasks (HuProSO3: AMASS test poses; full, three occlusions, 5 leaf joints)."""

    tasks: List[str] = field(default_factory=lambda: ["full", "occ_left_leg", "occ_left_arm",
                                                      "occ_right_shoulder", "leaves"])
    num_poses: Optional[int] = 10_000  # seeded test poses (null: the whole split)
    split: str = "test"
    batch_size: int = 256  # poses fitted at once (results do not depend on it beyond rounding)
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"


@dataclass
class EvalIKConfig:
    task: str = "eval-ik"
    prior: Optional[str] = None  # a prior.pt, or "none" (raw pose, no prior term)
    priors: List[str] = field(default_factory=list)
    output_dir: str = "outputs/eval/ik"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    ik: IKBenchmarkConfig = field(default_factory=IKBenchmarkConfig)
    fitting: IKFittingConfig = field(default_factory=IKFittingConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
