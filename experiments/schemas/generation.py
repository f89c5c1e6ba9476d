"""The eval-generation and eval-ik tasks: the generation and 3D-joint IK benchmarks other pose priors publish."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, config_dataclass
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from pose_prior.fitting.joints3d_fit import Joints3DFitSettings


@dataclass
class GenerationSettingsConfig:
    """Sizes of the generation metrics (defaults: the published conventions' own)."""

    conventions: List[str] = field(default_factory=lambda: ["dposer-x", "nrdf"])  # dposer-x: pose space; nrdf: joints
    dposer_x_samples: int = 50_000  # DPoser-X: 50k samples
    nrdf_samples: int = 500  # NRDF: 500 samples
    num_references: int = 10_000  # train poses of PRDC's real set (seeded)
    prdc_k: int = 3
    apd_samples: int = 500  # dposer-x APD: the first 500 samples
    dnn_samples: Optional[int] = 1000  # samples whose nearest train pose is searched (null: all)
    dnn_database: Optional[int] = None  # train rows searched for dNN (null: the whole split)
    joint_stats_rows: Optional[int] = None  # train rows of the nrdf joint statistics (null: all)
    chunk: int = 1024  # rows of every distance matrix block (memory bound)
    knn_backend: Literal["torch", "faiss"] = "torch"  # PRDC k-NN radii: float64 torch or exact FAISS + float64
    split: str = "train"  # the reference split
    seed: int = 0


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
