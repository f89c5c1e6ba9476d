"""Every N epochs, the histogram of the discriminator's whole-pose output on held-out real poses and on
generated poses (the validation plot of the authors' code): how far apart the two still are."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from callbacks.evaluation_common import log_images
from pose_prior.visual.plots import close, plot_discriminator_histogram


class DiscriminatorHistogramCallback(pl.Callback):
    """Collects `pl_module.validation_scores` ({"real": [...], "generated": [...]}, (B,) tensors appended by
    the module's validation step) and draws `<out_dir>/discriminator_epochXXXX.png` on rank zero (its own
    share of the validation batches under DDP)."""

    def __init__(self, out_dir: str | Path, every_n_epochs: int = 1) -> None:
        self.out_dir = Path(out_dir)
        self.every_n_epochs = max(1, int(every_n_epochs))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.validation_scores = {"real": [], "generated": []}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = getattr(pl_module, "validation_scores", None)
        epoch = trainer.current_epoch
        if trainer.sanity_checking or not scores or not scores["real"] or (epoch + 1) % self.every_n_epochs:
            return
        if trainer.is_global_zero:
            path = self.out_dir / f"discriminator_epoch{epoch:04d}.png"
            real, generated = torch.cat(scores["real"]).cpu(), torch.cat(scores["generated"]).cpu()
            close(plot_discriminator_histogram(real, generated, path, title=f"epoch {epoch}"))
            log_images(trainer, "discriminator_histogram", [path])
        pl_module.validation_scores = {"real": [], "generated": []}
