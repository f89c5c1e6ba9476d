"""Prior evaluations: the coverage, interpolation and generation sections, and the eval-coverage, eval-interp,
compare tasks."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional

from experiments.schemas.common import BodyModelConfig, LoggerConfig, TrainerConfig
from experiments.schemas.data import AmassDataConfig, DemoDataConfig
from experiments.schemas.shape import ShapeEvalSizesConfig


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
    farthest_samples: int = 10  # generated bodies farthest from the train split, drawn by their nearest (Fig. 4)
    every_n_epochs: int = 0  # as a training callback: every N epochs (0 = off)
    nearest_levels: Optional[List[int]] = None  # vertex groups of the exact search's lower bounds; null = default


@dataclass
class InterpolationSizesConfig:
    """Interpolation smoothness (paper Sec. 4.2): seeded test pairs, meshes per path, inversion settings."""

    num_pairs: int = 100
    steps: int = 11  # meshes per path including both endpoints (n = steps - 1 transitions)
    seed: int = 0
    batch_size: int = 32  # pairs inverted at once
    invert: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of prior.invert
    max_inversion_mm: Optional[float] = None  # pairs with an endpoint inverted worse than this are left out
    render_pairs: int = 3  # pairs drawn as mesh sequences (paper Fig. 6); 0 = none
    every_n_epochs: int = 0


@dataclass
class GenerationSettingsConfig:
    """Generation metrics (eval-generation, compare); defaults: the published conventions' own sizes."""

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
    generation: GenerationSettingsConfig = field(default_factory=GenerationSettingsConfig)
    shape: ShapeEvalSizesConfig = field(default_factory=ShapeEvalSizesConfig)  # the shape priors' table
    train: CompareTrainConfig = field(default_factory=CompareTrainConfig)
    trainer: EvalTrainerConfig = field(default_factory=EvalTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
