"""Write a VPoser `prior.pt` (kind "vposer") during training: the weights of the best validation epoch."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from callbacks.export_prior import training_position
from pose_prior.priors import VPoserPrior


class VPoserExportCallback(pl.Callback):
    """Export `pl_module.vposer` to `path` whenever `monitor` (lower is better) reaches a new best.

    Epochs without a validation result (validation disabled) export unconditionally at the end of the
    training epoch, so a run always leaves a prior. The best value is kept in the callback state, so a
    resumed run only overwrites the file with a better model.
    """

    def __init__(self, path: str | Path, monitor: str = "val/v2v", provenance: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.monitor = monitor
        self.provenance = dict(provenance or {})
        self.best: float = math.inf
        self._validated_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.path.name}]"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", math.inf))

    @rank_zero_only
    def _export(self, trainer: pl.Trainer, module: pl.LightningModule, score: float | None) -> None:
        provenance = {**self.provenance, **training_position(trainer)}  # date, commit: stamp_provenance
        if score is not None:
            provenance[self.monitor] = float(score)
        VPoserPrior(copy.deepcopy(module.vposer)).save(self.path, provenance)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        self._validated_epoch = trainer.current_epoch
        score = float(value.item() if torch.is_tensor(value) else value)
        if score < self.best:  # NaN never counts as an improvement
            self.best = score
            self._export(trainer, pl_module, score)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validated_epoch != trainer.current_epoch and not math.isfinite(self.best):
            self._export(trainer, pl_module, None)  # no validation so far: keep the latest weights
