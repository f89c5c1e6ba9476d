"""Every N epochs, picture bodies decoded from fixed latent samples (front and side)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from callbacks.evaluation_common import log_images
from pose_prior.visual.plots import close
from pose_prior.visual.render import render_bodies


class SampledBodiesCallback(pl.Callback):
    """Render `num_bodies` generator samples with the run's body model to `<out_dir>/epochXXXX.png` and W&B."""

    def __init__(self, body_model: torch.nn.Module, out_dir: str | Path, num_bodies: int = 8, every_n_epochs: int = 1):
        self.body_model = body_model
        self.out_dir = Path(out_dir)
        self.num_bodies = num_bodies
        self.every_n_epochs = max(1, every_n_epochs)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs:
            return
        g = torch.Generator().manual_seed(0)  # the same latent points every epoch
        z = pl_module.latent.sample(self.num_bodies, generator=g).to(pl_module.device)
        was_training = pl_module.generator.training
        pl_module.generator.eval()
        with torch.no_grad():
            pose = pl_module.generator.body_pose(z)  # (n, 63)
            verts = self.body_model.to(pose.device)(pose).vertices.cpu().numpy()
        pl_module.generator.train(was_training)
        path = self.out_dir / f"epoch{epoch:04d}.png"
        close(render_bodies(verts, self.body_model.faces.cpu().numpy(), path))
        log_images(trainer, "samples", [path])
