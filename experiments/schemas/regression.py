"""Image regression through a frozen prior (paper Sec. 3.3, Table 4): train-regressor, eval-regressor, demo-images."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig

DEFAULT_DEMO_IMAGES_DIR = "outputs/demo/eft_images"


@dataclass
class RegressorPriorConfig:
    """The frozen prior: a prior.pt of kind "gan" (e.g. outputs/runs/gan_s/prior.pt from `make train-gan-s`)."""

    path: Optional[str] = None


@dataclass
class HmrConfig:
    """Pretrained HMR/SPIN/EFT weights (local files only; nothing is downloaded)."""

    checkpoint: Optional[str] = None  # SPIN data/model_checkpoint.pt or an EFT model-zoo .pt; null = random trunk
    mean_params: Optional[str] = None  # SPIN data/smpl_mean_params.npz; null = built-in default (a checkpoint overrides it)
    calibrate_bn_batches: int = 8  # without a checkpoint only: re-estimate the random trunk's BatchNorm statistics


@dataclass
class RegressorModelConfig:
    # pooled (2048-d ResNet features) | hidden (HMR fc2, 1024) | pooled+params
    features: Literal["pooled", "hidden", "pooled+params"] = "pooled"
    mlp_hidden: List[int] = field(default_factory=lambda: [1024, 1024])
    mlp_dropout: float = 0.0
    train_heads: bool = False  # also train HMR's fc1/fc2/decpose/decshape/deccam (orientation, shape, camera)
    cache_features: bool = False  # keep backbone features of un-augmented crops in memory (frozen trunk)
    extra_regressor: Optional[str] = None  # SPIN's data/J_regressor_extra.npy (9, 6890) for SMPL; null = substitutes


@dataclass
class RegressorLossConfig:
    """SPIN/EFT weights: total = loss_scale * (5 kp2d + 5 kp3d + 1 pose + 0.001 betas + 1 cam)."""

    keypoint_weight: float = 5.0
    openpose_weight: float = 0.0  # SPIN's openpose_train_weight
    gt_keypoint_weight: float = 1.0  # SPIN's gt_train_weight
    joints3d_weight: float = 5.0
    pose_weight: float = 1.0
    beta_weight: float = 0.001
    cam_weight: float = 1.0
    loss_scale: float = 60.0


@dataclass
class RegressorOptimConfig:
    lr: float = 5e-5  # SPIN/EFT
    weight_decay: float = 0.0


@dataclass
class AugmentConfig:
    enabled: bool = True
    flip_prob: float = 0.5
    scale_factor: float = 0.25
    rot_factor: float = 30.0
    rot_prob: float = 0.4
    noise_factor: float = 0.4


@dataclass
class DemoImagesConfig:
    """Size of the synthetic EFT-format image set (rendered from the body model)."""

    num_train: int = 96
    num_val: int = 32
    image_size: int = 256
    seed: int = 0
    force: bool = False


@dataclass
class EftDataConfig:
    """EFT JSON files over image folders; train_json null = the synthetic images in demo_dir."""

    train_json: Optional[str] = None  # e.g. eft_fit/COCO2014-All-ver01.json
    val_json: Optional[str] = None  # e.g. eft_fit/COCO2014-Val-ver10.json
    image_dir: Optional[str] = None  # e.g. coco/train2014
    val_image_dir: Optional[str] = None  # defaults to image_dir
    demo_dir: str = DEFAULT_DEMO_IMAGES_DIR
    batch_size: int = 64
    num_workers: int = 4
    max_train_samples: Optional[int] = None
    max_val_samples: Optional[int] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainRegressorConfig:
    task: str = "train-regressor"
    output_dir: str = "outputs/runs/regressor"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # clear a used output_dir first (else a non-empty one is refused without resume)
    prior: RegressorPriorConfig = field(default_factory=RegressorPriorConfig)
    hmr: HmrConfig = field(default_factory=HmrConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    model: RegressorModelConfig = field(default_factory=RegressorModelConfig)
    loss: RegressorLossConfig = field(default_factory=RegressorLossConfig)
    optim: RegressorOptimConfig = field(default_factory=RegressorOptimConfig)
    data: EftDataConfig = field(default_factory=EftDataConfig)
    demo_images: DemoImagesConfig = field(default_factory=DemoImagesConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    grid_images: int = 8  # predicted meshes over their crops, logged at every validation


@dataclass
class H36MImagesConfig:
    """H3.6M Protocol 2 from images; h36m_file null = the synthetic held-out split in demo_dir."""

    h36m_file: Optional[str] = None  # SPIN's h36m_valid_protocol2.npz
    image_dir: Optional[str] = None  # folder that `imgname` entries (images/S9_...jpg) are relative to
    j_regressor: Optional[str] = None  # (17, V) .npy for the body model (SPIN's J_regressor_h36m.npy for SMPL)
    demo_dir: str = DEFAULT_DEMO_IMAGES_DIR
    batch_size: int = 32
    num_workers: int = 2
    max_frames: Optional[int] = None


@dataclass
class EvalRegressorConfig:
    task: str = "eval-regressor"
    checkpoint: Optional[str] = None  # a train-regressor checkpoint (.ckpt)
    hmr_trunk_path: Optional[str] = None  # the HMR/EFT file the checkpoint refers to, if moved; null = recorded path
    output_dir: Optional[str] = None  # null = <run folder of the checkpoint>/eval
    data: H36MImagesConfig = field(default_factory=H36MImagesConfig)
    demo_images: DemoImagesConfig = field(default_factory=DemoImagesConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)  # only for writing the synthetic set
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    grid_images: int = 8


@dataclass
class DemoImagesTaskConfig:
    task: str = "demo-images"
    data: EftDataConfig = field(default_factory=EftDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    demo_images: DemoImagesConfig = field(default_factory=DemoImagesConfig)
