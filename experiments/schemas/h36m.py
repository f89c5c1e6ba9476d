"""2D keypoint fitting on H3.6M Protocol 2 (paper Sec. 4.3, Table 3): the eval-h36m and demo-h36m tasks."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig, config_dataclass
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from pose_prior.fitting import FitSettings


@dataclass
class H36MEvalDataConfig:
    """SPIN's h36m_valid_protocol2.npz and the 2D keypoints to fit (null file = the synthetic one)."""

    h36m_file: Optional[str] = None  # imgname/center/scale/S (+ part/openpose) npz; null = synthetic demo file
    h36m_keypoints: Optional[str] = None  # separate npz with `part` (N,24,3) or `openpose` (N,25,3) (+ imgname)
    keypoint_key: Optional[Literal["part", "openpose"]] = None  # null: whichever is present
    max_frames: Optional[int] = None  # evaluate only the first N frames (null = all)
    batch_size: int = 64
    num_workers: int = 0
    crop_res: int = 224  # keypoints are fitted in SPIN's crop pixels (side 200*scale around center)


@dataclass
class SyntheticH36MConfig:
    """The synthetic H3.6M-format file of the embedded default (AMASS TEST-split poses, known camera)."""

    file: str = "outputs/demo/h36m/h36m_valid_protocol2.npz"
    frames: int = 256
    seed: int = 0
    focal: float = 5000.0
    amass: AmassDataConfig = field(default_factory=lambda: AmassDataConfig(prepared_dir="outputs/prepared/demo_amass"))
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


# The fitting section is `FitSettings` itself (sequence fields as lists): one home for every setting.
FittingConfig = config_dataclass(FitSettings, "FittingConfig")


@dataclass
class EvalH36MConfig:
    task: str = "eval-h36m"
    output_dir: str = "outputs/eval/h36m"
    seed: int = 0
    # prior.pt files (any kind: gan, vposer, gmm) and/or "none"; empty = every outputs/runs/*/prior.pt found
    priors: List[str] = field(default_factory=list)
    include_none: bool = True  # also fit with no prior (raw pose), the paper's comparison
    j_regressor: Optional[str] = None  # SPIN's J_regressor_h36m.npy; null = the open model's own
    dtype: Literal["float32", "float64"] = "float32"  # body model, prior and fitting (float64: bit-stable across batching)
    data: H36MEvalDataConfig = field(default_factory=H36MEvalDataConfig)
    synthetic: SyntheticH36MConfig = field(default_factory=SyntheticH36MConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    fitting: FittingConfig = field(default_factory=FittingConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=1))
    logger: LoggerConfig = field(default_factory=LoggerConfig)
