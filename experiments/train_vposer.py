"""Runner of `make train-vposer`: AMASS DataModule + VAEPriorModule + Trainer, into a run folder.

The run folder (`output_dir`) holds config.yaml, checkpoints/ (last.ckpt after every epoch + a kept one every N epochs), prior.pt
(kind "vposer", the weights of the best validation v2v), csv/metrics.csv and the W&B run (offline unless
logged in). The data are the same prepared AMASS splits the GAN priors train on.
With `published_checkpoint` set, the published V02_05 weights are converted to prior.pt instead of training.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor

from callbacks.export_vposer import VPoserExportCallback
from datamodules.amass.datamodule import AmassDataModule
from experiments.config import to_container
from experiments.training import fit, prepare_run_dir, say, wandb_mode
from lightning_modules.vae_prior import VAL_METRIC, VAEPriorModule
from pose_prior.body_model import load_body_model
from pose_prior.priors import VPoserPrior


def build_vposer_module(cfg: DictConfig) -> VAEPriorModule:
    bm = cfg.body_model
    body_model = load_body_model(bm.path, model_type=bm.model_type, gender=bm.gender)
    o = cfg.optim
    return VAEPriorModule(
        body_model=body_model, body_model_path=bm.path, model_type=bm.model_type, gender=bm.gender,
        **to_container(cfg.model), **to_container(cfg.loss),
        lr=o.lr, weight_decay=o.weight_decay, plateau_patience=o.plateau_patience, plateau_factor=o.plateau_factor,
        seed=int(cfg.seed),
    )


def build_vposer_datamodule(cfg: DictConfig) -> AmassDataModule:
    return AmassDataModule.from_config(cfg, eval_batch_size=cfg.data.eval_batch_size or cfg.data.batch_size)


def validation_enabled(cfg: DictConfig) -> bool:
    return cfg.trainer.val_batches is None or cfg.trainer.val_batches != 0


def find_published_checkpoint(path: str | Path) -> Path:
    """A V02_05 snapshot: the file itself, or the newest-mtime .ckpt in `<dir>/snapshots/` or `<dir>/`
    (as human_body_prior's `exprdir2model` picks it)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path / "snapshots", path):
            ckpts = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
            if ckpts:
                return ckpts[-1]
        raise FileNotFoundError(f"published_checkpoint: no *.ckpt in {path}/snapshots or {path}")
    raise FileNotFoundError(f"published_checkpoint: {path} does not exist (expected a V02_05 .ckpt or its folder)")


def convert_published(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the published VPoser weights as prior.pt (kind "vposer") in the run folder."""
    ckpt = find_published_checkpoint(cfg.published_checkpoint)
    prior = VPoserPrior.from_checkpoint(ckpt, provenance={"config": to_container(cfg)})
    prior.save(run_dir / "prior.pt")
    say(f"converted {ckpt} -> {run_dir / 'prior.pt'}")
    return run_dir


def run_train_vposer(cfg: DictConfig) -> Path:
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = prepare_run_dir(cfg)
    if cfg.published_checkpoint:
        return convert_published(cfg, run_dir)
    datamodule = build_vposer_datamodule(cfg)
    module = build_vposer_module(cfg)
    provenance = {
        "trainer": "VAEPriorModule (VPoser v2 losses, docs/protocols.md)",
        "config": to_container(cfg),
        "data": {"amass_dir": cfg.data.amass_dir or f"synthetic demo tree ({cfg.data.demo_dir})",
                 "prepared_dir": cfg.data.prepared_dir},
    }
    callbacks: list[Callback] = [
        VPoserExportCallback(run_dir / "prior.pt", monitor=VAL_METRIC, provenance=provenance),
    ]
    if validation_enabled(cfg) and cfg.optim.early_stop_patience > 0:
        callbacks.append(EarlyStopping(monitor=VAL_METRIC, mode="min", patience=cfg.optim.early_stop_patience,
                                       min_delta=cfg.optim.early_stop_min_delta, check_on_train_epoch_end=False))
    if cfg.logger.csv or wandb_mode(cfg.logger.wandb_mode) != "disabled":
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    fit(cfg, run_dir, module, datamodule, callbacks, prior=run_dir / "prior.pt")
    say(f"run folder: {run_dir}  prior: {run_dir / 'prior.pt'}")
    return run_dir
