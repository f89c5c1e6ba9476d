"""Runner of `make train-gan-beta` / `make train-gan-theta-beta` (paper supplement D): shape data (+ AMASS
poses for theta-beta) + ShapePriorModule + Trainer, into a run folder.

The run folder (`output_dir`) holds config.yaml, checkpoints/, prior.pt (kind gan_beta or gan_theta_beta,
rewritten after every epoch), shapes_manifest.json (the shape source and its seeded split), csv/metrics.csv,
the W&B run and, with `shape_coverage.at_end`, shape_coverage.json: recall / precision (Eq. 5, zero pose,
mm) of the trained prior and of betas ~ N(0, I) on the chosen split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from callbacks.export_prior import training_position
from datamodules.amass.datamodule import AmassDataModule
from datamodules.shapes.datamodule import PoseShapeDataModule, ShapeDataModule
from experiments.config import to_container
from experiments.training import fit, prepare_run_dir, say
from lightning_modules.shape_prior import ShapePriorModule
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.shape_coverage import evaluate_shape_coverage, normal_betas, prior_betas
from pose_prior.io import atomic_write_json


class ShapePriorExportCallback(pl.Callback):
    """After every training epoch, write the generator as a loadable prior (kind gan_beta / gan_theta_beta)."""

    def __init__(self, path: Path, provenance: dict[str, Any]) -> None:
        self.path, self.provenance = Path(path), dict(provenance)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: ShapePriorModule) -> None:
        pl_module.frozen_prior().cpu().save(self.path, {**self.provenance, **training_position(trainer)})


def build_shape_module(cfg: DictConfig) -> ShapePriorModule:
    model, optim = OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.optim, resolve=True)
    return ShapePriorModule(seed=int(cfg.seed), **model, **optim)


def build_shape_data(cfg: DictConfig, run_dir: Path | None = None) -> ShapeDataModule:
    d = cfg.data
    return ShapeDataModule(
        source=d.shapes_source, path=d.shapes_path, gender=d.shapes_gender, num_betas=int(cfg.model.num_betas),
        batch_size=int(d.batch_size), seed=int(d.shapes_seed), valid_fraction=float(d.shapes_valid_fraction),
        test_fraction=float(d.shapes_test_fraction), train_batches_per_epoch=int(cfg.trainer.batches_per_epoch),
        manifest_path=None if run_dir is None else run_dir / "shapes_manifest.json")


def build_shape_datamodule(cfg: DictConfig, run_dir: Path | None = None) -> ShapeDataModule | PoseShapeDataModule:
    """GAN-beta: betas alone; GAN-theta-beta: AMASS poses (the train-gan preparation) with independent betas."""
    shapes = build_shape_data(cfg, run_dir)
    if cfg.model.model == "beta":
        return shapes
    return PoseShapeDataModule(AmassDataModule.from_config(cfg), shapes)


def shape_coverage_report(cfg: DictConfig, module: ShapePriorModule, shapes: ShapeDataModule) -> dict[str, Any]:
    """Shape recall / precision of the trained prior and of N(0, I) on `shape_coverage.split` (mm)."""
    c = cfg.shape_coverage
    body_model = load_body_model(cfg.body_model.path, model_type=cfg.body_model.model_type,
                                 gender=cfg.body_model.gender)
    refs = shapes.betas(c.split)
    generated = {"prior": prior_betas(module.frozen_prior().cpu(), c.num_generated, c.seed),
                 "normal": normal_betas(c.num_generated, refs.shape[1], c.seed)}
    out: dict[str, Any] = {"split": c.split, "body_model": cfg.body_model.path, "pose": "zero", "units": "mm"}
    for name, betas in generated.items():
        out[name] = evaluate_shape_coverage(betas, refs, body_model, chunk=int(c.chunk_size)).summary()
    return out


def run_train_shape_gan(cfg: DictConfig) -> Path:
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = prepare_run_dir(cfg)
    datamodule = build_shape_datamodule(cfg, run_dir)
    module = build_shape_module(cfg)
    shapes = datamodule if isinstance(datamodule, ShapeDataModule) else datamodule.shapes
    shapes.setup()
    provenance = {"config": to_container(cfg),
                  "data": {"shapes": shapes.manifest["source"], "shapes_split_seed": int(cfg.data.shapes_seed),
                           "amass_dir": None if cfg.model.model == "beta"
                           else (cfg.data.amass_dir or f"synthetic demo tree ({cfg.data.demo_dir})")}}
    fit(cfg, run_dir, module, datamodule, [ShapePriorExportCallback(run_dir / "prior.pt", provenance)],
        prior=run_dir / "prior.pt")
    if cfg.shape_coverage.at_end and rank_zero_only.rank == 0:
        report = shape_coverage_report(cfg, module, shapes)
        atomic_write_json(run_dir / "shape_coverage.json", report)
        for name in ("prior", "normal"):
            say(f"shape coverage ({name}, {report['split']} split, mm): recall mean "
                f"{report[name]['recall']['mean_mm']:.2f}, precision mean {report[name]['precision']['mean_mm']:.2f}")
    say(f"run folder: {run_dir}  prior: {run_dir / 'prior.pt'}")
    return run_dir
