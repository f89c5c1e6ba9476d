"""KeypointFittingModule: `fit_keypoints` over the batches of an H3.6M-format dataset under Lightning.

Run with `Trainer(inference_mode=False)` and `trainer.test(module, dataloaders=...)`: each rank fits its
shard (Lightning's distributed sampler) and keeps its per-frame results in memory (body_pose, latent,
betas, global_orient, transl, losses, iterations, evaluations, MPJPE and P-MPJPE, the frame's dataset index). At the end of
the test loop the shards are all-gathered and `merge_fits` orders them by frame (dropping the frames the
distributed sampler pads with): `module.fits` then holds the merged arrays on every rank, and
`module.fit_seconds` the wall time of the fitting itself (the `fit_keypoints` calls, without data loading,
metrics or Trainer overhead; with several ranks, the slowest rank's, since they fit in parallel).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from pose_prior.body_model.keypoints import keypoint_map_for_body_model
from pose_prior.evaluation.metrics3d import h36m_p2_errors
from pose_prior.fitting.keypoint_fit import (
    FitSettings,
    KeypointBody,
    fit_keypoints,
    fitted_betas,
    to_crop_pixels,
)


class KeypointFittingModule(pl.LightningModule):
    """Fits every frame of a batch {index, keypoints (B,K,3) image px, S (B,24,4), center (B,2), scale (B,)}."""

    def __init__(
        self,
        prior: Optional[nn.Module],
        body_model: nn.Module,
        j_regressor_h36m: np.ndarray | torch.Tensor,
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
        self.register_buffer("j_regressor", torch.as_tensor(np.asarray(j_regressor_h36m), dtype=torch.float64))
        self.keypoint_body = KeypointBody(body_model, keypoint_map_for_body_model(body_model, layout))
        self._shard: list[dict[str, torch.Tensor]] = []  # this rank's batches during a test loop
        self.fits: dict[str, np.ndarray] | None = None  # merged per-frame results after a test loop
        self._fit_seconds = 0.0  # this rank's time inside fit_keypoints during a test loop
        self.fit_seconds: float | None = None  # after a test loop: the fit's wall time (slowest rank)

    def _fit(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        with torch.inference_mode(False), torch.enable_grad():
            kp = to_crop_pixels(batch["keypoints"], batch["center"], batch["scale"], self.crop_res)
            principal = torch.full_like(batch["center"], self.crop_res / 2.0)
            kp = kp.to(self.body_model.dtype)
            if kp.is_cuda:
                torch.cuda.synchronize(kp.device)
            start = time.perf_counter()
            res = fit_keypoints(self.prior, self.body_model, kp, self.layout,
                                principal, self.settings, keypoint_body=self.keypoint_body)
            if kp.is_cuda:
                torch.cuda.synchronize(kp.device)
            self._fit_seconds += time.perf_counter() - start
        with torch.no_grad():
            # camera-frame orientation, as SPIN evaluates (MPJPE depends on it; P-MPJPE does not)
            verts = self.body_model(res.body_pose, betas=fitted_betas(res), global_orient=res.global_orient).vertices
            verts = verts.reshape(res.body_pose.shape[0], -1, 3)
            mpjpe, pmpjpe = h36m_p2_errors(verts, batch["S"].to(torch.float64), self.j_regressor)
        out = {
            "index": torch.as_tensor(batch["index"]).reshape(-1).long(),
            "body_pose": res.body_pose, "betas": res.betas, "global_orient": res.global_orient, "transl": res.transl,
            "iterations": res.iterations, "evaluations": res.evaluations, "flipped": res.flipped, "start": res.start,
            "mpjpe": mpjpe, "p_mpjpe": pmpjpe,
        }
        if res.latent is not None:
            out["latent"] = res.latent
        out.update({f"loss_{k}": v for k, v in res.losses.items()})
        self.log("h36m/p_mpjpe", pmpjpe.mean(), batch_size=pmpjpe.shape[0], prog_bar=True, sync_dist=True)
        self.log("h36m/mpjpe", mpjpe.mean(), batch_size=mpjpe.shape[0], sync_dist=True)
        return out

    def on_test_epoch_start(self) -> None:
        self._shard, self.fits = [], None
        self._fit_seconds, self.fit_seconds = 0.0, None

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shard.append({k: v.detach() for k, v in self._fit(batch, batch_idx).items()})

    def on_test_epoch_end(self) -> None:
        """All-gather the shards (the distributed sampler gives every rank as many frames) and merge them."""
        local = {k: torch.cat([b[k] for b in self._shard]) for k in self._shard[0]} if self._shard else {}
        self._shard = []
        seconds = self.all_gather(torch.tensor(self._fit_seconds, dtype=torch.float64, device=self.device))
        self.fit_seconds = float(seconds.max())
        parts = []
        for key, value in local.items():
            # bool is not a collective dtype on every backend
            gathered = self.all_gather(value.to(torch.uint8) if value.dtype == torch.bool else value)
            if self.trainer.world_size == 1:
                gathered = gathered[None]
            for rank, tensor in enumerate(gathered.cpu()):
                if len(parts) <= rank:
                    parts.append({})
                parts[rank][key] = tensor.bool().numpy() if value.dtype == torch.bool else tensor.numpy()
        self.fits = merge_fits(parts) if parts else None

    def results_state(self) -> dict[str, Any]:
        """The merged fits, for the process that started ddp_spawn workers."""
        return {"fits": self.fits, "fit_seconds": self.fit_seconds}

    def load_results_state(self, state: dict[str, Any]) -> None:
        self.fits = state["fits"]
        self.fit_seconds = state.get("fit_seconds")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        return self._fit(batch, batch_idx)

    def configure_optimizers(self) -> None:  # nothing trains
        return None


def merge_fits(parts: list[dict[str, np.ndarray]], num_frames: int | None = None) -> dict[str, np.ndarray]:
    """Join per-rank (or per-batch) results into arrays ordered by frame index (first copy of each frame)."""
    if not parts:
        raise ValueError("merge_fits: no fitting results")
    keys = set(parts[0])
    merged = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    _, first = np.unique(merged["index"], return_index=True)
    order = first[np.argsort(merged["index"][first])]
    merged = {k: v[order] for k, v in merged.items()}
    if num_frames is not None and merged["index"].shape[0] != num_frames:
        raise ValueError(f"fitting results for {merged['index'].shape[0]} frames, expected {num_frames}")
    return merged
