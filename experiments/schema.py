"""Dataclass schemas that every experiment YAML is validated against.

omegaconf structured configs reject unknown keys and wrong types; `experiments.config` turns those
errors into messages that name the key and list the valid choices. One dataclass per config section;
one top-level dataclass per task (registered in `TASK_SCHEMAS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# VPoser v1-era AMASS splits as the paper's authors used them (DESIGN.md).
DEFAULT_SPLITS: Dict[str, List[str]] = {
    "train": [
        "CMU", "MPI_Limits", "TotalCapture", "Eyes_Japan_Dataset", "KIT", "BMLrub", "BMLmovi",
        "BMLhandball", "EKUT", "TCD_handMocap", "ACCAD",
    ],
    "valid": ["HumanEva", "MPI_HDM05", "SFU", "MPI_mosh"],
    "test": ["Transitions_mocap", "SSM_synced"],
}

# Names that different AMASS releases give the same sub-dataset (canonical -> aliases).
DEFAULT_ALIASES: Dict[str, List[str]] = {
    "MPI_HDM05": ["HDM05", "MPIHDM05", "MPI_HDM05"],
    "MPI_Limits": ["PosePrior", "MPILimits", "MPI_Limits"],
    "MPI_mosh": ["MoSh", "MPImosh", "MPI_mosh"],
    "Transitions_mocap": ["Transitions", "Transitionsmocap", "Transitions_mocap"],
    "SSM_synced": ["SSM", "SSMsynced", "SSM_synced"],
    "BMLrub": ["BioMotionLab_NTroje", "BMLrub"],
    "BMLmovi": ["BMLmovi"],
    "BMLhandball": ["BMLhandball"],
    "Eyes_Japan_Dataset": ["Eyes_Japan_Dataset", "EyesJapanDataset"],
    "TCD_handMocap": ["TCD_handMocap", "TCDHands"],
    "DFaust_67": ["DFaust_67", "DFaust"],
}


@dataclass
class BodyModelConfig:
    """Which body model evaluates poses: "open", "open-light", or a path to an SMPL/SMPL-H file."""

    path: str = "open"
    model_type: str = "smpl"  # smpl | smplh
    gender: str = "neutral"


@dataclass
class AmassDataConfig:
    """Where AMASS lives, how it is split and how frames are selected."""

    amass_dir: Optional[str] = None  # raw AMASS tree; null = the synthetic demo tree below
    demo_dir: str = "outputs/demo/amass"  # synthetic AMASS-format tree (made on demand)
    prepared_dir: str = "outputs/prepared/amass"
    splits: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_SPLITS.items()})
    aliases: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ALIASES.items()})
    frame_selection: str = "all"  # all | vposer | resample
    vposer_keep_fraction: float = 0.3
    vposer_trim_fraction: float = 0.1
    target_fps: Optional[float] = None  # for frame_selection=resample
    seed: int = 0
    batch_size: int = 1024
    num_workers: int = 0
    verify_checksums: bool = False  # re-hash every source file (sha256) to decide that a preparation is current


@dataclass
class DemoDataConfig:
    """Size of the synthetic AMASS-format tree."""

    sequences_per_subject: int = 2
    subjects_per_dataset: int = 2
    frames_per_sequence: int = 240
    framerate: float = 60.0
    seed: int = 0


@dataclass
class PrepareAmassConfig:
    task: str = "prepare-amass"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


@dataclass
class DemoDataTaskConfig:
    task: str = "demo-data"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


TASK_SCHEMAS: Dict[str, Any] = {
    "prepare-amass": PrepareAmassConfig,
    "demo-data": DemoDataTaskConfig,
}


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; DDP/SLURM come from Lightning's own strategies."""

    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = 1  # int, list of ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto picks DDP (find_unused_parameters) when more than one process
    max_epochs: int = 300
    batches_per_epoch: int = 1000  # an "epoch" is a fixed number of batches (authors: 1000)
    val_batches: int = 20
    precision: str = "32-true"
    log_every_n_steps: int = 50
    checkpoint_every_n_epochs: int = 10
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class LoggerConfig:
    """W&B (offline unless logged in) and plain CSV."""

    project: str = "pose-prior"
    name: Optional[str] = None
    wandb_mode: str = "auto"  # auto (online if logged in, else offline) | online | offline | disabled
    tags: List[str] = field(default_factory=list)
    csv: bool = True


@dataclass
class GanModelConfig:
    """Generator / discriminator sizes (authors' defaults) and the latent space."""

    latent: str = "S"  # S (spherical) | U (uniform) | N (normal)
    latent_dim: int = 32
    gen_hidden: int = 512
    gen_dropout: float = 0.1
    leaky_slope: float = 0.2
    disc_joint_features: int = 32
    disc_hidden: int = 64  # authors' public config (hidden_poseall); HMR and their code default: 1024
    d_steps: int = 10  # discriminator updates per generator update
    joint_loss_weight: float = 21.0
    pose_loss_weight: float = 1.0


@dataclass
class AdamConfig:
    """Adam for both networks (authors: lr 2e-4, betas (0.5, 0.999))."""

    lr: float = 2e-4
    d_lr: Optional[float] = None  # discriminator learning rate if different from lr
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass
class SampleImagesConfig:
    """Pictures of sampled bodies logged every `every_n_epochs`."""

    num_bodies: int = 8
    every_n_epochs: int = 1


@dataclass
class CoverageSizesConfig:
    """Recall / precision sizes (paper Sec. 4.1: 6M generated, 10k references, 10k precision samples)."""

    num_generated: int = 6_000_000
    num_references: int = 10_000  # bodies drawn (seeded) from each split for recall
    num_precision: int = 10_000  # generated bodies whose nearest real body is searched
    precision_database: Optional[int] = None  # rows of each split searched for precision; null = the whole split
    chunk_size: int = 4096  # bodies generated / read and searched at once (memory bound)
    seed: int = 0
    tsne_points: int = 1500  # generated + real poses in the t-SNE plot (0 = no plot)
    tsne_perplexity: float = 30.0
    every_n_epochs: int = 0  # as a training callback: every N epochs (0 = off)
    nearest_levels: Optional[List[int]] = None  # vertex groups of the exact search's lower bounds; null = default


@dataclass
class TrainGanConfig:
    task: str = "train-gan"
    output_dir: str = "outputs/runs/gan"
    seed: int = 0
    resume: bool = False
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    model: GanModelConfig = field(default_factory=GanModelConfig)
    optim: AdamConfig = field(default_factory=AdamConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    samples: SampleImagesConfig = field(default_factory=SampleImagesConfig)
    coverage: CoverageSizesConfig = field(default_factory=CoverageSizesConfig)  # recall/precision callback (off: 0)


TASK_SCHEMAS["train-gan"] = TrainGanConfig


# --- baselines: VPoser v2 and the GMM, trained on the same prepared AMASS splits --------------------
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


TASK_SCHEMAS["train-vposer"] = TrainVPoserConfig


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
    reduce: str = "marginalise"  # marginalise | zero_pad (how the 69-d SMPL GMM becomes 63-d)


@dataclass
class TrainGmmConfig:
    task: str = "train-gmm"
    output_dir: str = "outputs/runs/gmm"
    seed: int = 0
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    gmm: GmmFitConfig = field(default_factory=GmmFitConfig)


TASK_SCHEMAS["train-gmm"] = TrainGmmConfig


# Image regression (paper Sec. 3.3 / Table 4): schemas live in their own module.
from experiments.regressor_schema import REGRESSOR_TASK_SCHEMAS  # noqa: E402

TASK_SCHEMAS.update(REGRESSOR_TASK_SCHEMAS)


# --- 2D keypoint fitting on H3.6M Protocol 2 (paper Sec. 4.3, Table 3) ------------------------------
@dataclass
class H36MEvalDataConfig:
    """SPIN's h36m_valid_protocol2.npz and the 2D keypoints to fit (null file = the synthetic one)."""

    h36m_file: Optional[str] = None  # imgname/center/scale/S (+ part/openpose) npz; null = synthetic demo file
    h36m_keypoints: Optional[str] = None  # separate npz with `part` (N,24,3) or `openpose` (N,25,3) (+ imgname)
    keypoint_key: Optional[str] = None  # part | openpose (null: whichever is present)
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


@dataclass
class FittingConfig:
    """pose_prior.fitting.FitSettings (SMPLify camera init + L-BFGS stages)."""

    focal: float = 5000.0
    camera_iters: int = 30
    body_iters: int = 100
    history_size: int = 10
    ftol: float = 1e-9
    gtol: float = 1e-7
    sigma: float = 100.0
    depth_weight: float = 100.0
    gmm_weight: float = 4.78
    latent_l2_weight: float = 0.0
    ignore_keypoints: List[str] = field(
        default_factory=lambda: ["OP Neck", "OP RHip", "OP LHip", "Right Hip", "Left Hip", "Neck", "RHip", "LHip"]
    )
    flip: bool = True
    restarts: int = 1
    candidates: int = 256
    seed: int = 0


@dataclass
class EvalH36MConfig:
    task: str = "eval-h36m"
    output_dir: str = "outputs/eval/h36m"
    seed: int = 0
    # prior.pt files (any kind: gan, vposer, gmm) and/or "none"; empty = every outputs/runs/*/prior.pt found
    priors: List[str] = field(default_factory=list)
    include_none: bool = True  # also fit with no prior (raw pose), the paper's comparison
    j_regressor: Optional[str] = None  # SPIN's J_regressor_h36m.npy; null = the open model's own
    dtype: str = "float32"  # float32 | float64: body model, prior and fitting (float64: bit-stable across batching)
    data: H36MEvalDataConfig = field(default_factory=H36MEvalDataConfig)
    synthetic: SyntheticH36MConfig = field(default_factory=SyntheticH36MConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    fitting: FittingConfig = field(default_factory=FittingConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=1))
    logger: LoggerConfig = field(default_factory=LoggerConfig)


TASK_SCHEMAS["eval-h36m"] = EvalH36MConfig
TASK_SCHEMAS["demo-h36m"] = EvalH36MConfig

# Prior evaluations (coverage, interpolation, compare): their module registers them in TASK_SCHEMAS.
import experiments.eval_schema  # noqa: E402, F401
