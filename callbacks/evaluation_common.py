"""Pieces the evaluation callbacks share: the prior of a module, reference poses, W&B images, JSON."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from pose_prior.io import atomic_write_json
from pose_prior.priors.base import Prior

PoseSources = Mapping[str, Any]  # split -> (N, 63) poses: numpy array / memmap, tensor, PoseArrayDataset


def prior_of(pl_module: pl.LightningModule) -> Prior:
    """The frozen prior a module offers through `frozen_prior()` (training modules give a frozen copy)."""
    frozen_prior = getattr(pl_module, "frozen_prior", None)
    if frozen_prior is None:
        raise TypeError(f"{type(pl_module).__name__} offers no prior: it needs a `frozen_prior()` method")
    return frozen_prior()


class DataModuleSplits:
    """Picklable getter: trainer -> {split: trainer.datamodule.dataset(split)} for the splits that exist."""

    def __init__(self, splits: Sequence[str] = ("train", "test")) -> None:
        self.splits = tuple(splits)

    def __call__(self, trainer: pl.Trainer) -> dict[str, Any]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "dataset"):
            raise ValueError("DataModuleSplits: the trainer has no datamodule with a `dataset(split)` method")
        out = {}
        for split in self.splits:
            try:
                out[split] = dm.dataset(split)
            except (KeyError, ValueError):  # split missing or empty: evaluate the others
                continue
        return out


def resolve_sources(sources: PoseSources | Callable[[pl.Trainer], PoseSources], trainer: pl.Trainer) -> dict[str, Any]:
    return dict(sources(trainer) if callable(sources) else sources)


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives `self.log` scalars: batches that stepped, not optimiser steps (a GAN batch makes
    1 + k optimiser steps under manual optimisation, so `global_step` would put pictures k + 1 times further)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = int(getattr(loop, "_batches_that_stepped", trainer.global_step))
    module = trainer.lightning_module
    if module is not None and getattr(module, "_current_fx_name", None) == "on_train_epoch_end":
        step -= 1  # Lightning logs this hook's scalars one step back (its fit loop has already advanced)
    return step


def log_images(trainer: pl.Trainer, key: str, paths: Sequence[Path]) -> None:
    """Log PNGs to every W&B logger of the trainer (rank zero only), on the scalars' step axis."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(p) for p in paths], step=logging_step(trainer))


def log_scalars(pl_module: pl.LightningModule, values: Mapping[str, float]) -> None:
    """`self.log` each value (identical on every rank, so rank zero logs) when the hook allows logging."""
    for name, value in values.items():
        if value is not None and math.isfinite(value):
            pl_module.log(name, float(value), rank_zero_only=True)


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    """A results file: strict JSON (non-finite numbers as null), written atomically."""
    atomic_write_json(path, dict(record))


class PeriodicEvaluationCallback(pl.Callback):
    """Runs `evaluate` every `every_n_epochs` training epochs (into `out_dir/epochNNNN`) and, with
    `run_on_test`, at the end of a test loop (how the evaluation commands drive it on every rank)."""

    every_n_epochs: int = 0
    out_dir: Path | None = None
    run_on_test: bool = False
    result_attributes: tuple[str, ...] = ()  # what `evaluate` keeps on the callback for the caller

    def results_state(self) -> dict[str, Any]:
        """The in-memory results (e.g. for a process that did not run the evaluation)."""
        return {name: getattr(self, name, None) for name in self.result_attributes}

    def load_results_state(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, out_dir: Path | None = None) -> Any:
        raise NotImplementedError

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        out = self.out_dir / f"epoch{trainer.current_epoch:04d}" if self.out_dir is not None else None
        self.evaluate(trainer, pl_module, out)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run_on_test:
            self.evaluate(trainer, pl_module, self.out_dir)
