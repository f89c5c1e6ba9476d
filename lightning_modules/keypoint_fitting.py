"""KeypointFittingModule: `fit_keypoints` over the batches of an H3.6M-format dataset under Lightning.

Run with `Trainer(inference_mode=False)` and `trainer.test(module, dataloaders=...)`: each rank fits its
shard (Lightning's distributed sampler), every batch is written to `<parts_dir>/rank<r>_batch<i>.npz`
(body_pose, latent, global_orient, transl, losses, iterations, MPJPE and P-MPJPE per frame, the frame's
dataset index), and `merge_fit_parts(parts_dir)` joins them on rank 0 afterwards (duplicated frames that
the distributed sampler pads with are dropped by index).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from pose_prior.fitting import FitSettings, KeypointBody, fit_keypoints, to_crop_pixels
from pose_prior.io import atomic_save
from pose_prior.keypoints import keypoint_map_for_body_model
from pose_prior.metrics3d import h36m_p2_errors


class KeypointFittingModule(pl.LightningModule):
    """Fits every frame of a batch {index, keypoints (B,K,3) image px, S (B,24,4), center (B,2), scale (B,)}."""

    def __init__(
        self,
        prior: Optional[nn.Module],
        body_model: nn.Module,
        j_regressor_h36m: np.ndarray | torch.Tensor,
        parts_dir: str | os.PathLike,
        layout: str = "spin24",
        settings: FitSettings | dict | None = None,
        crop_res: int = 224,
    ) -> None:
        super().__init__()
        self.prior = prior
        self.body_model = body_model
        self.settings = settings if isinstance(settings, FitSettings) else FitSettings.from_dict(settings)
        self.layout = layout
        self.crop_res = int(crop_res)
        self.parts_dir = str(parts_dir)
        self.register_buffer("j_regressor", torch.as_tensor(np.asarray(j_regressor_h36m), dtype=torch.float64))
        self.keypoint_body = KeypointBody(body_model, keypoint_map_for_body_model(body_model, layout))

    def _fit(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        with torch.inference_mode(False), torch.enable_grad():
            kp = to_crop_pixels(batch["keypoints"], batch["center"], batch["scale"], self.crop_res)
            principal = torch.full_like(batch["center"], self.crop_res / 2.0)
            res = fit_keypoints(self.prior, self.body_model, kp.to(self.body_model.dtype), self.layout,
                                principal, self.settings, keypoint_body=self.keypoint_body)
        with torch.no_grad():
            # camera-frame orientation, as SPIN evaluates (MPJPE depends on it; P-MPJPE does not)
            verts = self.body_model(res.body_pose, global_orient=res.global_orient).vertices
            verts = verts.reshape(res.body_pose.shape[0], -1, 3)
            mpjpe, pmpjpe = h36m_p2_errors(verts, batch["S"].to(torch.float64), self.j_regressor)
        out = {
            "index": torch.as_tensor(batch["index"]).reshape(-1).long(),
            "body_pose": res.body_pose, "global_orient": res.global_orient, "transl": res.transl,
            "iterations": res.iterations, "flipped": res.flipped, "start": res.start,
            "mpjpe": mpjpe, "p_mpjpe": pmpjpe,
        }
        if res.latent is not None:
            out["latent"] = res.latent
        out.update({f"loss_{k}": v for k, v in res.losses.items()})
        self._write(out, batch_idx)
        self.log("h36m/p_mpjpe", pmpjpe.mean(), batch_size=pmpjpe.shape[0], prog_bar=True, sync_dist=True)
        self.log("h36m/mpjpe", mpjpe.mean(), batch_size=mpjpe.shape[0], sync_dist=True)
        return out

    def _write(self, out: dict[str, torch.Tensor], batch_idx: int) -> None:
        arrays = {k: v.detach().cpu().numpy() for k, v in out.items()}
        path = Path(self.parts_dir) / f"rank{self.global_rank:03d}_batch{batch_idx:06d}.npz"

        def writer(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        atomic_save(path, writer)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._fit(batch, batch_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._fit(batch, batch_idx)

    def configure_optimizers(self) -> None:  # nothing trains
        return None


def merge_fit_parts(parts_dir: str | os.PathLike, num_frames: int | None = None) -> dict[str, np.ndarray]:
    """Join the per-rank/batch npz files into arrays ordered by frame index (first copy of each frame)."""
    files = sorted(Path(parts_dir).glob("rank*_batch*.npz"))
    if not files:
        raise FileNotFoundError(f"{parts_dir}: no fitting results (rank*_batch*.npz)")
    parts = []
    for f in files:
        with np.load(f) as npz:
            parts.append({k: npz[k] for k in npz.files})
    keys = set(parts[0])
    merged = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    _, first = np.unique(merged["index"], return_index=True)
    order = first[np.argsort(merged["index"][first])]
    merged = {k: v[order] for k, v in merged.items()}
    if num_frames is not None and merged["index"].shape[0] != num_frames:
        raise ValueError(f"{parts_dir}: results for {merged['index'].shape[0]} frames, expected {num_frames}")
    return merged
