"""Stop a training run at the first non-finite loss or weight, before a checkpoint or prior can hold it.

Checked after every training batch: the train losses the module logged for this batch, the loss it
returned, and its trainable weights (a NaN loss makes NaN gradients, so the weights turn NaN in the same
step). Raising (not `trainer.should_stop`) matters: a stopped epoch still ends normally, and its
end-of-epoch checkpoint and prior export would then write the diverged state over the last good one.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or weight; `what`, `epoch` and `step` say where."""

    def __init__(self, what: str, epoch: int, step: int, batch_idx: int) -> None:
        self.what, self.epoch, self.step, self.batch_idx = what, epoch, step, batch_idx
        self.advice = ""  # what the runner adds: the last good checkpoint, how to go on
        super().__init__(what)

    def __str__(self) -> str:
        where = f"training diverged: {self.what} at epoch {self.epoch + 1}, batch {self.batch_idx} (logged step {self.step})"
        return f"{where}; {self.advice}" if self.advice else where


def _nonfinite(value: Any) -> bool:
    if torch.is_tensor(value):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    return isinstance(value, float) and not math.isfinite(value)


class DivergenceCallback(pl.Callback):
    """Raise `TrainingDiverged` naming the first non-finite train loss (logged under `prefix`) or weight."""

    def __init__(self, prefix: str = "train/") -> None:
        self.prefix = prefix

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        names = {name.removesuffix("_step").removesuffix("_epoch") for name, value in trainer.callback_metrics.items()
                 if name.startswith(self.prefix) and _nonfinite(value)}
        bad = sorted(names, key=lambda n: ("loss" not in n, n))  # the losses first, then their parts
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not bad and _nonfinite(loss):
            bad = ["the training loss"]
        if not bad:
            bad = [f"weight {name}" for name, p in pl_module.named_parameters()
                   if p.requires_grad and not bool(torch.isfinite(p.detach()).all())][:3]
        if bad:
            what = f"non-finite {bad[0]}" + (f" (also {', '.join(bad[1:])})" if len(bad) > 1 else "")
            # the step axis of the CSV / W&B scalars (a GAN batch makes several optimiser steps)
            step = int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))
            raise TrainingDiverged(what, trainer.current_epoch, step, batch_idx)
