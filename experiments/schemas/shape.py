"""The shape-prior tasks (paper supplement D): train-shape-gan (GAN-beta, GAN-theta-beta: shape data, the
model section (the core's `ShapeGanSettings`), GAN-S's optimiser, the shape coverage computed at the end of
a run) and eval-shape (shape priors beside betas ~ N(0, I))."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

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


@dataclass
class ShapeEvalSizesConfig:
    """Sizes of eval-shape: coverage (Eq. 5, zero pose and posed), t-SNE, interpolation, rendering."""

    num_generated: int = 10_000  # bodies drawn from each source (recall searches them all)
    split: Literal["train", "valid", "test"] = "test"  # the reference shapes (and the AMASS split for posed)
    num_references: Optional[int] = None  # reference bodies of the split (seeded subset); null = the whole split
    posed: bool = True  # also posed bodies for the sources that yield a pose
    num_posed_references: int = 1000  # posed references: split poses, each with an independent split shape
    chunk_size: int = 1024
    method: Literal["bounds", "brute"] = "bounds"  # both exact: lower-bound pruning, or every pair
    interp_pairs: int = 100  # seeded random latent pairs (supp. Fig. 10)
    interp_steps: int = 11  # bodies per path including both endpoints
    tsne_points: int = 1500  # generated + train betas per t-SNE (supp. Fig. 12); 0 = no t-SNE
    tsne_perplexity: float = 30.0
    render_samples: int = 6  # bodies drawn per source (supp. Figs. 10-11); 0 = none
    render_pairs: int = 2  # interpolation paths drawn per source; 0 = none
    seed: int = 0


@dataclass
class EvalShapeConfig:
    task: str = "eval-shape"
    prior: Optional[str] = None  # a shape prior.pt, or POSE.pt+SHAPE.pt for the disentangled pair
    priors: List[str] = field(default_factory=list)  # or several
    names: List[str] = field(default_factory=list)  # row labels (default: from the paths)
    output_dir: str = "outputs/eval/shape"
    data: ShapeDataConfig = field(default_factory=ShapeDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
    body_model: BodyModelConfig = field(default_factory=BodyModelConfig)
    shape: ShapeEvalSizesConfig = field(default_factory=ShapeEvalSizesConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
