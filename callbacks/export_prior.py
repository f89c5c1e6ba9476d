"""Write `prior.pt` (generator weights + latent space + architecture + provenance) during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from pose_prior.priors.gan.prior import save_prior


def training_position(trainer: pl.Trainer) -> dict[str, int]:
    """Where training stands at the end of an epoch, for a prior's provenance: `epoch` is Lightning's
    0-based index of the epoch just finished, `epochs_completed` the count, `global_step` the optimiser
    steps (a GAN batch makes 1 + d_steps of them), `logged_step` the batches (the CSV / W&B step axis)."""
    loop = trainer.fit_loop.epoch_loop
    return {"epoch": int(trainer.current_epoch), "epochs_completed": int(trainer.current_epoch) + 1,
            "global_step": int(trainer.global_step),
            "logged_step": int(getattr(loop, "_batches_that_stepped", trainer.global_step))}


class PriorExportCallback(pl.Callback):
    """After every training epoch (and at the end), export the generator as a loadable prior."""

    def __init__(self, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.provenance = dict(provenance or {})

    @rank_zero_only
    def _export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # save_prior stamps the date, git commit and torch version
        save_prior(self.path, module.generator, module.latent, {**self.provenance, **training_position(trainer)})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._export(trainer, pl_module)
