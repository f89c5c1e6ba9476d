"""Predicted meshes drawn over their input crops: a grid image saved to disk and logged to W&B."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from pose_prior.hmr import denormalize_image
from pose_prior.io import atomic_path
from pose_prior.visual.raster import draw_mesh, image_grid


def prediction_overlays(images: torch.Tensor, vertices: torch.Tensor, cam: torch.Tensor, faces: np.ndarray,
                        alpha: float = 0.6) -> list[np.ndarray]:
    """Crops (B, 3, R, R) normalised + vertices (B, V, 3) + weak-perspective cams (B, 3) -> B overlaid uint8 images."""
    res = images.shape[-1]
    out = []
    for img, v, c in zip(images, vertices.detach().float().cpu(), cam.detach().float().cpu()):
        px = ((c[0] * v[:, :2] + c[1:]) + 1.0) * res / 2.0  # normalised crop coords -> crop px
        out.append(draw_mesh(denormalize_image(img), px.numpy(), v[:, 2].numpy(), faces, alpha=alpha))
    return out


def save_grid(overlays: list[np.ndarray], path: str | Path, columns: int = 4) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image_grid(overlays, columns)).save(tmp, format="PNG")
    return path


def log_grid(loggers, path: Path, key: str, step: int) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=step)


class PredictionGridCallback(pl.Callback):
    """After each validation epoch: the first `num_images` validation crops with their predicted meshes."""

    def __init__(self, out_dir: str | Path, num_images: int = 8) -> None:
        self.out_dir = Path(out_dir)
        self.num_images = int(num_images)
        self._batch = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and self.num_images > 0:
            n = self.num_images
            self._batch = {k: (v[:n] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self._batch is None or trainer.sanity_checking:
            return
        b = self._batch
        with torch.no_grad():
            pred = pl_module(b["img"], b.get("key"), b.get("augmented"))
        faces = pl_module.body_model.faces.cpu().numpy()
        overlays = prediction_overlays(b["img"], pred["vertices"], pred["cam"], faces)
        path = save_grid(overlays, self.out_dir / f"epoch{trainer.current_epoch:04d}.png")
        log_grid(trainer.loggers, path, "val/predictions", trainer.global_step)
        self._batch = None
