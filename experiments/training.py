"""Shared run plumbing: run folder, loggers (W&B + CSV), checkpoints, and the Lightning Trainer."""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.plugins.io import TorchCheckpointIO

from callbacks.divergence import DivergenceCallback, TrainingDiverged
from experiments.config import ConfigError, save_config, to_container
from experiments.spawn_results import carry_results_back
from pose_prior.io import atomic_save, atomic_write_text


def wandb_mode(requested: str) -> str:
    """'auto' -> 'online' when the user is logged in to W&B (an API key is found), else 'offline'."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    try:
        import wandb

        # login(prompt=False) only looks for a key (env, settings, netrc); `wandb.api` is deprecated
        return "online" if wandb.login(prompt=False, verify=False) else "offline"
    except Exception:  # no key, no netrc, unreadable settings
        return "offline"


def quiet_known_noise() -> None:
    """Silence messages that say nothing about this run: Lightning's tips and known deprecation noise
    from libraries (each filter names the exact message, so new warnings still show)."""
    import logging
    import warnings

    for pattern in (r".*LeafSpec.* is deprecated.*", r".*Found \d+ module\(s\) in eval mode.*",
                    r"Checkpoint directory .* exists and is not empty"):  # expected when resuming
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


class _DropTips:
    """Drops Lightning's advertising tips ("💡 Tip: ... litmodels ...")."""

    def filter(self, record: Any) -> bool:
        return "Tip:" not in str(record.msg)


def say(*parts: Any) -> None:
    """print on rank zero only (under DDP every process runs the runner)."""
    if rank_zero_only.rank == 0:
        print(*parts, flush=True)


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Claim the run folder (see `claim_run_dir`), check a resume against it, record the resolved config."""
    run_dir = Path(cfg.output_dir)
    claim_run_dir(cfg, run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write_probe_{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir={run_dir}: cannot write there ({exc.strerror or exc}); "
                          "choose a writable folder with output_dir=...") from exc
    check_resume_matches(cfg, run_dir)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """A training run (a config with `resume`) owns its folder: a used folder is only continued
    (`resume=true`) or cleared (`overwrite=true`), never silently mixed with a new run. Checked before
    anything is written. A run with nothing to resume (the GMM's one-shot fit) has `overwrite` only."""
    if ("resume" not in cfg and "overwrite" not in cfg) or rank_zero_only.rank != 0:
        # under DDP the other ranks start once rank zero has claimed (and written into) the folder
        return
    resume, overwrite = bool(cfg.get("resume", False)), bool(cfg.get("overwrite", False))
    if resume and overwrite:
        raise ConfigError("resume=true and overwrite=true contradict each other: pass one of them")
    if not run_dir.is_dir() or not any(run_dir.iterdir()) or resume:
        return
    if overwrite:
        if not (run_dir / "config.yaml").is_file():  # never empty a folder that is not a run folder
            raise ConfigError(f"overwrite=true: output_dir={run_dir} is not empty and holds no config.yaml, so it "
                              "is not a run folder; it is left alone: choose another output_dir")
        say(f"overwrite=true: clearing {run_dir}")
        for entry in run_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return
    held = sorted(p.name for p in run_dir.iterdir())
    raise ConfigError(
        f"output_dir={run_dir} is not empty ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}): "
        + ("continue that run with resume=true, " if "resume" in cfg else "")
        + "start it again with overwrite=true (deletes its contents), or choose another output_dir=..."
    )


def check_resume_matches(cfg: DictConfig, run_dir: Path) -> None:
    """`resume=true` continues the run as it was built: the task and the `model` section must equal the
    ones recorded in the run folder, and the model hyperparameters stored in its newest checkpoint (a
    changed architecture would fail later as a state-dict size mismatch; a changed latent would not fail
    at all). Trainer, data and logging keys may change (e.g. more epochs)."""
    if not cfg.get("resume", False):
        return
    recorded = run_dir / "config.yaml"
    if recorded.is_file():
        before_all = OmegaConf.to_container(OmegaConf.load(recorded), resolve=True) or {}
        if before_all.get("task") != cfg.task:
            raise ConfigError(f"resume=true: {run_dir} holds a {before_all.get('task')!r} run, this is {cfg.task!r}: "
                              "choose another output_dir")
        if "model" in cfg:
            _refuse_model_change(before_all.get("model") or {}, to_container(cfg.model), str(recorded))
    newest = newest_checkpoint(run_dir / "checkpoints")
    if newest is not None and "model" in cfg:
        hparams = newest.hparams
        now = to_container(cfg.model)
        _refuse_model_change({k: hparams[k] for k in now if k in hparams}, {k: now[k] for k in now if k in hparams},
                             str(newest.path))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _refuse_model_change(before: dict[str, Any], now: dict[str, Any], where: str) -> None:
    diff = sorted(k for k in set(before) | set(now)
                  if _plain(before.get(k, "<absent>")) != _plain(now.get(k, "<absent>")))
    if diff:
        was = " ".join(f"model.{k}={before.get(k, '<absent>')}" for k in diff)
        is_now = ", ".join(f"model.{k}={now.get(k, '<absent>')}" for k in diff)
        raise ConfigError(
            f"resume=true: {where} records {was}, this config has {is_now}. "
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
        # One W&B run per run: the id is kept beside the checkpoints so `resume=true` continues it; any
        # other run (a new training run, an evaluation written again) gets a new id.
        # (rank zero decides: under DDP the other ranks log nothing to W&B)
        run_id_file = run_dir / "wandb_run_id.txt"
        if rank_zero_only.rank == 0 and not (cfg.get("resume", False) and run_id_file.exists()):
            atomic_write_text(run_id_file, uuid.uuid4().hex[:12])
        # a W&B sweep agent has already chosen the trial's run id
        run_id = os.environ.get("WANDB_RUN_ID") or (
            run_id_file.read_text().strip() if run_id_file.exists() else uuid.uuid4().hex[:12])
        log = cfg.logger
        logger = WandbLogger(
            project=log.project,
            name=log.name or run_dir.name,
            save_dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            entity=log.get("entity"),
            group=log.get("group"),
            notes=log.get("notes"),
            tags=list(log.tags),
            config=to_container(cfg),
        )
        # Lightning passes wandb's deprecated `anonymous` setting, which makes wandb warn on every run
        logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def finish_loggers(loggers: Sequence[Logger], status: str = "success", prior: Path | None = None) -> None:
    """Flush every logger and end this run's W&B run (a later run in the same process gets its own);
    `prior` (a prior.pt) is attached to the W&B run as an artifact first. Says where the W&B run is."""
    where = None
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0:
            if prior is not None and prior.is_file():
                log_prior_artifact(logger, prior)
            where = wandb_location(logger)
        logger.save()
        logger.finalize(status)
    _finish_wandb_run(0 if status == "success" else 1)
    if where:
        say(where)


def log_prior_artifact(logger: WandbLogger, prior: Path) -> None:
    """prior.pt as a versioned W&B artifact of type "prior" (kept in the offline run until synced)."""
    import wandb

    run = logger.experiment
    artifact = wandb.Artifact(name=f"prior-{run.id}", type="prior", metadata={"file": str(prior)})
    artifact.add_file(str(prior), name="prior.pt")
    run.log_artifact(artifact)


def wandb_location(logger: WandbLogger) -> str | None:
    """Where the W&B run went: its URL online; offline, its folder and the command that uploads it."""
    run = logger.experiment
    if getattr(run, "disabled", False):
        return None
    if run.settings.mode == "offline" or run.settings._offline:
        folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files -> the run folder
        return f"W&B run (offline): {folder}\n  upload it: .venv/bin/wandb sync {folder}"
    return f"W&B run: {run.url}"


def _finish_wandb_run(exit_code: int = 0) -> None:
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


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


def checkpoint_callbacks(cfg: DictConfig, run_dir: Path) -> list[ModelCheckpoint]:
    """A kept `epochNNNN.ckpt` every `checkpoint_every_n_epochs`, and `last.ckpt` after EVERY epoch.

    Lightning 2.6 writes `save_last` only in an epoch where its callback saved a periodic checkpoint, so
    `last.ckpt` has its own callback (`EveryEpochLastCheckpoint`)."""
    folder = str(run_dir / "checkpoints")
    periodic = ModelCheckpoint(
        dirpath=folder, filename="epoch{epoch:04d}", auto_insert_metric_name=False, save_last=False, save_top_k=-1,
        every_n_epochs=cfg.trainer.checkpoint_every_n_epochs, save_on_train_epoch_end=True,
        enable_version_counter=False,  # a resumed run rewrites the epochs it repeats, no "-v1" copies
    )
    return [periodic, EveryEpochLastCheckpoint(folder)]


class EveryEpochLastCheckpoint(ModelCheckpoint):
    """Writes only `last.ckpt`, at the end of every training epoch (so a kill loses at most that epoch)."""

    def __init__(self, dirpath: str) -> None:
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, every_n_epochs=1,
                         save_on_train_epoch_end=True, enable_version_counter=False)

    @property
    def state_key(self) -> str:  # distinct from a periodic ModelCheckpoint with every_n_epochs=1
        return self._generate_state_key(role="last", every_n_epochs=1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint writes that a kill cannot truncate: Lightning's fsspec transaction writes to the system
    temp folder and `shutil.move`s the file, which is a copy (not a rename) across filesystems and is
    never fsynced. This writes beside the target, fsyncs and renames (`pose_prior.io.atomic_save`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        atomic_save(path, lambda tmp: torch.save(checkpoint, tmp))


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    epoch: int  # the epoch index it was saved at the end of
    global_step: int
    hparams: dict[str, Any]


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """Open a checkpoint lazily (mmap: tensors are not read) and return where it stands; raises if unreadable."""
    ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)  # this run's own file
    return CheckpointInfo(path, int(ckpt["epoch"]), int(ckpt["global_step"]), dict(ckpt.get("hyper_parameters") or {}))


def newest_checkpoint(folder: Path, report: list[str] | None = None) -> CheckpointInfo | None:
    """The checkpoint furthest into training among those that load (`last.ckpt` wins a tie); unreadable
    ones (a truncated file) are skipped and named in `report`."""
    found: list[CheckpointInfo] = []
    for path in sorted(folder.glob("*.ckpt")):
        try:
            found.append(read_checkpoint_info(path))
        except Exception as exc:  # truncated or corrupt: any reader error means "not this one"
            if report is not None:
                report.append(f"{path.name} does not load ({type(exc).__name__}), skipped")
    if not found:
        return None
    return max(found, key=lambda c: (c.epoch, c.global_step, c.path.name == "last.ckpt"))


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """With `resume=true`: the newest loadable checkpoint of the run folder (said which), else None."""
    if not cfg.get("resume", False):
        return None
    folder = run_dir / "checkpoints"
    if rank_zero_only.rank == 0:  # a write interrupted by a kill; the final name was never replaced
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    skipped: list[str] = []
    newest = newest_checkpoint(folder, skipped)
    for line in skipped:
        say(f"resume: {folder / line}")
    if newest is None:
        say(f"resume=true but {folder} holds no loadable checkpoint: starting from scratch")
        return None
    say(f"resume: continuing from {newest.path} (end of epoch {newest.epoch + 1}, step {newest.global_step})")
    return str(newest.path)


def build_trainer(
    cfg: DictConfig, run_dir: Path, callbacks: Sequence[Callback], loggers: Sequence[Logger], **overrides: Any
) -> pl.Trainer:
    quiet_known_noise()  # again here: runners are also called in-process (tests, compare), not via `main`
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
    kwargs["plugins"] = [AtomicCheckpointIO()]
    kwargs.update(overrides)
    return carry_results_back(pl.Trainer(**kwargs))


def fit(cfg: DictConfig, run_dir: Path, module: pl.LightningModule, datamodule: pl.LightningDataModule,
        callbacks: Sequence[Callback], prior: Path | None = None) -> pl.Trainer:
    """The training runners' common part: checkpoints (`last.ckpt` every epoch, a kept one every N), the
    divergence stop, loggers, resume from the newest loadable checkpoint, and the end-of-run report.

    A diverged run raises `TrainingDiverged` with the diagnosis completed: which loss, where, and the
    last good checkpoint left in the run folder (no checkpoint or prior is written after the bad step)."""
    ckpt_path = resume_checkpoint(cfg, run_dir)
    loggers = build_loggers(cfg, run_dir)
    all_callbacks = [DivergenceCallback(), *callbacks, *checkpoint_callbacks(cfg, run_dir)]
    trainer = build_trainer(cfg, run_dir, all_callbacks, loggers)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except TrainingDiverged as exc:
        finish_loggers(loggers, status="failed")
        good = newest_checkpoint(run_dir / "checkpoints")
        prior_note = f"; {prior} is from before the divergence" if prior is not None and prior.is_file() else ""
        if good is not None:
            exc.advice = (f"last good checkpoint kept: {good.path} (end of epoch {good.epoch + 1}){prior_note}. "
                          "Continue from it with resume=true (its optimiser state, learning rate included, is restored), "
                          f"or start again with a lower optim.lr (now {cfg.optim.lr}) and overwrite=true")
        else:
            exc.advice = (f"no checkpoint was written before it. Lower optim.lr (now {cfg.optim.lr}) and start "
                          "again with overwrite=true")
        raise
    finish_loggers(loggers, prior=prior)
    return trainer
