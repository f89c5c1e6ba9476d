"""Runner of `make train-gan-s/u/n`: AMASS DataModule + AdversarialPriorModule + Trainer, into a run folder.

The run folder (`output_dir`) holds config.yaml, checkpoints/ (last.ckpt after every epoch + a kept one every N epochs), prior.pt,
samples/*.png, csv/metrics.csv and the W&B run (offline unless logged in).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from callbacks.discriminator_histogram import DiscriminatorHistogramCallback
from callbacks.export_prior import PriorExportCallback
from callbacks.sample_bodies import SampledBodiesCallback
from datamodules.amass.datamodule import AmassDataModule
from experiments.config import to_container
from experiments.training import fit, prepare_run_dir, say
from lightning_modules.adversarial_prior import AdversarialPriorModule
from pose_prior.body_model import load_body_model
from pose_prior.priors.gan.training import real_batches_per_iteration


def build_gan_module(cfg: DictConfig) -> AdversarialPriorModule:
    """The module from the config's `model` (GanSettings) and `optim` (GanOptimSettings) sections."""
    model, optim = OmegaConf.to_object(cfg.model), OmegaConf.to_object(cfg.optim)
    return AdversarialPriorModule.from_settings(model, optim, seed=int(cfg.seed))


def build_gan_datamodule(cfg: DictConfig) -> AmassDataModule:
    """Training batches hold the real poses of one iteration of the procedure (authors: B, fresh: k*B);
    validation batches B."""
    per_iteration = real_batches_per_iteration(cfg.model.procedure, cfg.model.d_steps)
    return AmassDataModule.from_config(
        cfg, batch_size=cfg.data.batch_size * per_iteration, eval_batch_size=cfg.data.batch_size
    )


def run_train_gan(cfg: DictConfig) -> Path:
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = prepare_run_dir(cfg)
    datamodule = build_gan_datamodule(cfg)
    module = build_gan_module(cfg)
    body_model = load_body_model(cfg.body_model.path, model_type=cfg.body_model.model_type,
                                 gender=cfg.body_model.gender)
    provenance = {
        "config": to_container(cfg),
        "data": {"amass_dir": cfg.data.amass_dir or f"synthetic demo tree ({cfg.data.demo_dir})",
                 "prepared_dir": cfg.data.prepared_dir},
    }
    callbacks = [
        PriorExportCallback(run_dir / "prior.pt", provenance),
        SampledBodiesCallback(body_model, run_dir / "samples", cfg.samples.num_bodies, cfg.samples.every_n_epochs),
        DiscriminatorHistogramCallback(run_dir / "samples", cfg.samples.every_n_epochs),
    ]
    if cfg.coverage.every_n_epochs > 0:  # recall / precision against the train and test splits
        from callbacks.coverage import CoverageCallback
        from callbacks.evaluation_common import DataModuleSplits

        callbacks.append(CoverageCallback.from_config(cfg.coverage, body_model, DataModuleSplits(("train", "test")),
                                                      out_dir=run_dir / "coverage", metadata={"name": run_dir.name}))
    fit(cfg, run_dir, module, datamodule, callbacks, prior=run_dir / "prior.pt")
    say(f"run folder: {run_dir}  prior: {run_dir / 'prior.pt'}")
    return run_dir
