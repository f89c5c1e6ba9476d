"""Baselines trained on the same prepared AMASS splits as the GANs: VPoser v2 and the GMM."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig
from experiments.schemas.data import AmassDataConfig, DemoDataConfig


@dataclass
class VPoserDataConfig(AmassDataConfig):
    """AMASS as for the GAN; batch 128 (V02_05.yaml); `eval_batch_size` null = batch_size."""

    batch_size: int = 128
    eval_batch_size: Optional[int] = None


@dataclass
class VPoserModelConfig:
    """VPoser v2 sizes (V02_05: num_neurons 512, latentD 32)."""

    num_neurons: int = 512
    latent_dim: int = 32


@dataclass
class VPoserLossConfig:
    """Loss weights of V02_05.yaml; rotation and joint terms only while epoch < keep_extra_until."""

    kl_weight: float = 0.005
    mesh_weight: float = 4.0
    matrot_weight: float = 2.0
    jtr_weight: float = 2.0
    keep_extra_until: int = 15


@dataclass
class VPoserOptimConfig:
    """Adam + ReduceLROnPlateau on val v2v; early stopping on val v2v (patience 0 = off)."""

    lr: float = 1e-3
    weight_decay: float = 1e-5
    plateau_patience: int = 5
    plateau_factor: float = 0.1
    early_stop_patience: int = 10
    early_stop_min_delta: float = 0.0


@dataclass
class VPoserTrainerConfig(TrainerConfig):
    """An epoch is one pass over the train split (batches_per_epoch null), validation on the whole valid split."""

    max_epochs: int = 100
    batches_per_epoch: Optional[int] = None
    val_batches: Optional[int] = None
    checkpoint_every_n_epochs: int = 1


@dataclass
class TrainVPoserConfig:
    task: str = "train-vposer"
    output_dir: str = "outputs/runs/vposer"
    seed: int = 100
    resume: bool = False
    overwrite: bool = False  # clear a used output_dir first (else a non-empty one is refused without resume)
    # Published V02_05 weights (a snapshot .ckpt, or the experiment folder): convert to prior.pt, no training.
    published_checkpoint: Optional[str] = None
    data: VPoserDataConfig = field(default_factory=VPoserDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    model: VPoserModelConfig = field(default_factory=VPoserModelConfig)
    loss: VPoserLossConfig = field(default_factory=VPoserLossConfig)
    optim: VPoserOptimConfig = field(default_factory=VPoserOptimConfig)
    trainer: VPoserTrainerConfig = field(default_factory=VPoserTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)



@dataclass
class GmmFitConfig:
    """Full-covariance GMM fitted by EM (scikit-learn) on a seeded subsample of the train split,
    or (smplify_pkl set) SMPLify's gmm_08.pkl converted instead of fitting."""

    n_components: int = 8
    max_samples: Optional[int] = 1_000_000  # rows drawn without replacement from the train split; null = all
    eval_max_samples: Optional[int] = 1_000_000  # rows of the valid split scored in gmm_fit.json; null = all
    max_iter: int = 100
    tol: float = 1e-3
    reg_covar: float = 1e-6
    n_init: int = 1
    num_threads: Optional[int] = None  # BLAS threads during EM (threadpoolctl); null = the library default
    smplify_pkl: Optional[str] = None  # path of gmm_08.pkl: convert it instead of fitting
    reduce: Literal["marginalise", "zero_pad"] = "marginalise"  # how the 69-d SMPL GMM becomes 63-d


@dataclass
class TrainGmmConfig:
    task: str = "train-gmm"
    output_dir: str = "outputs/runs/gmm"
    overwrite: bool = False  # replace the prior in a used output_dir (else a non-empty one is refused)
    seed: int = 0
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    gmm: GmmFitConfig = field(default_factory=GmmFitConfig)
