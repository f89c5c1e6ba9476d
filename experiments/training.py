"""Shared run plumbing: run folder, loggers (W&B + CSV), checkpoints, and the Lightning Trainer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from experiments.config import save_config, to_container


def wandb_mode(requested: str) -> str:
    """'auto' -> 'online' when the user is logged in to W&B (API key found), else 'offline'."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    try:
        import wandb

        return "online" if wandb.api.api_key else "offline"
    except Exception:  # no key, no netrc, unreadable settings
        return "offline"


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Create the run folder and record the resolved config in it."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.csv:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    mode = wandb_mode(cfg.logger.wandb_mode)
    if mode != "disabled":
        run_id_file = run_dir / "wandb_run_id.txt"
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
        logger = WandbLogger(
            project=cfg.logger.project,
            name=cfg.logger.name or run_dir.name,
            save_dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
            tags=list(cfg.logger.tags),
            config=to_container(cfg),
        )
        loggers.append(logger)
    return loggers


def remember_wandb_run(loggers: Sequence[Logger], run_dir: Path) -> None:
    """Store the W&B run id so `resume=true` continues the same W&B run."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and pl.utilities.rank_zero_only.rank == 0:
            (run_dir / "wandb_run_id.txt").write_text(logger.experiment.id)


def strategy_for(trainer_cfg: DictConfig) -> Any:
    """'auto' becomes DDP with unused-parameter detection when more than one process trains.

    A GAN's discriminator step leaves the generator without gradients (and vice versa), which plain
    DDP reports as unused parameters.
    """
    if trainer_cfg.strategy != "auto":
        return trainer_cfg.strategy
    devices = trainer_cfg.devices
    multi = trainer_cfg.num_nodes > 1 or (isinstance(devices, int) and devices > 1) or (
        not isinstance(devices, (int, str)) and len(devices) > 1
    )
    return "ddp_find_unused_parameters_true" if multi else "auto"


def checkpoint_callback(cfg: DictConfig, run_dir: Path) -> ModelCheckpoint:
    """`last.ckpt` every epoch plus a kept checkpoint every `checkpoint_every_n_epochs`."""
    return ModelCheckpoint(
        dirpath=str(run_dir / "checkpoints"),
        filename="epoch{epoch:04d}",
        auto_insert_metric_name=False,
        save_last=True,
        save_top_k=-1,
        every_n_epochs=cfg.trainer.checkpoint_every_n_epochs,
        save_on_train_epoch_end=True,
    )


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    if not cfg.resume:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        print(f"resume=true but {last} does not exist: starting from scratch")
        return None
    return str(last)


def build_trainer(
    cfg: DictConfig, run_dir: Path, callbacks: Sequence[Callback], loggers: Sequence[Logger], **overrides: Any
) -> pl.Trainer:
    t = cfg.trainer
    cbs = list(callbacks)
    if t.progress_bar:
        cbs.append(RichProgressBar(leave=True))
    kwargs: dict[str, Any] = dict(
        accelerator=t.accelerator,
        devices=t.devices if isinstance(t.devices, (int, str)) else list(t.devices),
        num_nodes=t.num_nodes,
        strategy=strategy_for(t),
        max_epochs=t.max_epochs,
        limit_train_batches=t.batches_per_epoch,
        limit_val_batches=t.val_batches,
        precision=t.precision,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        enable_progress_bar=t.progress_bar,
        default_root_dir=str(run_dir),
        callbacks=cbs,
        logger=list(loggers) if loggers else False,
        num_sanity_val_steps=0,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)
