"""Shared run plumbing: run folder, loggers (W&B + CSV), checkpoints, and the Lightning Trainer."""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from experiments.config import ConfigError, save_config, to_container
from experiments.spawn_results import carry_results_back
from pose_prior.io import atomic_write_text


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
    """Create the run folder and record the resolved config in it (after checking a resume against it)."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_resume_matches(cfg, run_dir)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def check_resume_matches(cfg: DictConfig, run_dir: Path) -> None:
    """`resume=true` continues the run as it was built: the `model` section must equal the one recorded in
    the run folder (a changed architecture or default would fail later as a state-dict size mismatch).
    Trainer, data and logging keys may change (e.g. more epochs)."""
    recorded = run_dir / "config.yaml"
    if not (cfg.get("resume", False) and "model" in cfg and recorded.is_file()
            and (run_dir / "checkpoints" / "last.ckpt").exists()):
        return
    before = (OmegaConf.to_container(OmegaConf.load(recorded), resolve=True) or {}).get("model") or {}
    now = to_container(cfg.model)
    diff = sorted(k for k in set(before) | set(now) if before.get(k, "<absent>") != now.get(k, "<absent>"))
    if diff:
        was = " ".join(f"model.{k}={before.get(k, '<absent>')}" for k in diff)
        is_now = ", ".join(f"model.{k}={now.get(k, '<absent>')}" for k in diff)
        raise ConfigError(
            f"resume=true: {recorded} records {was}, this config has {is_now}. "
            f"Pass ARGS=\"resume=true {was}\" to continue that run, or choose another output_dir."
        )


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):  # keep the earlier sessions' columns in the header
            with open(self.metrics_file_path, newline="") as fh:
                self.metrics_keys = sorted(next(csv.reader(fh), []))


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv survives `resume=true` (rows of earlier sessions are kept)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.csv:
        loggers.append(ResumableCSVLogger(save_dir=str(run_dir), name="csv", version=""))
    mode = wandb_mode(cfg.logger.wandb_mode)
    if mode != "disabled":
        _finish_wandb_run()  # a run left open by an earlier run in this process would swallow this one
        # One W&B run per run folder: the id is kept beside the checkpoints so `resume=true` continues it.
        run_id_file = run_dir / "wandb_run_id.txt"
        if not run_id_file.exists():
            atomic_write_text(run_id_file, uuid.uuid4().hex[:12])
        run_id = run_id_file.read_text().strip()
        logger = WandbLogger(
            project=cfg.logger.project,
            name=cfg.logger.name or run_dir.name,
            save_dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            tags=list(cfg.logger.tags),
            config=to_container(cfg),
        )
        loggers.append(logger)
    return loggers


def finish_loggers(loggers: Sequence[Logger]) -> None:
    """Flush every logger and end this run's W&B run, so a later run in the same process gets its own."""
    for logger in loggers:
        logger.save()
        logger.finalize("success")
    _finish_wandb_run()


def _finish_wandb_run() -> None:
    import wandb

    if wandb.run is not None:
        wandb.finish()


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
    return carry_results_back(pl.Trainer(**kwargs))
