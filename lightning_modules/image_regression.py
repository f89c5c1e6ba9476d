"""Image -> mesh regression through a frozen prior (paper Sec. 3.3 / 4.4, Table 4).

Frozen HMR/SPIN/EFT ResNet-50 (eval mode, no grad) -> features (pooled 2048-d by default) -> a new MLP
-> latent z, projected onto the prior's support -> the frozen generator (a GAN's, or VPoser's decoder for
Table 4's VPoser row) -> 21 body-joint rotations ->
the body model. Global orientation, shape and the weak-perspective camera come from the pretrained HMR
heads, frozen (default) or trained too (`train_heads`). Losses as SPIN/EFT: confidence-weighted 2D
keypoint MSE in normalised crop coordinates (EFT's weak projection s*X + t), 3D joints where present,
SMPL rotation matrices / betas where present; total scaled by 60 as SPIN does.

The checkpoint is self-contained: the prior's architecture is in the hyperparameters and its weights
in the state dict; the body model is rebuilt from its path and is not stored.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from pose_prior.body_model import load_body_model
from pose_prior.body_model.keypoints import keypoint_map_for_body_model
from pose_prior.hmr import FEATURE_DIM, HMR, POSE_DIM, load_hmr_checkpoint
from pose_prior.io import sha256_file
from pose_prior.priors.base import Prior
from pose_prior.priors.file_format import architecture_of, prior_from_architecture

FEATURE_SIZES = {"pooled": FEATURE_DIM, "hidden": 1024, "pooled+params": FEATURE_DIM + POSE_DIM + 10 + 3}
# SMPL-24 kinematic joints in LSP-14 order (R ankle ... L wrist, neck, head) + pelvis for centring
SMPL24_TO_LSP14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)


def build_mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class ImageRegressionModule(pl.LightningModule):
    def __init__(
        self,
        prior_spec: dict,
        body_model: Optional[dict] = None,
        features: str = "pooled",
        mlp_hidden: Optional[list[int]] = None,
        mlp_dropout: float = 0.0,
        train_heads: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        keypoint_weight: float = 5.0,
        openpose_weight: float = 0.0,
        gt_keypoint_weight: float = 1.0,
        joints3d_weight: float = 5.0,
        pose_weight: float = 1.0,
        beta_weight: float = 0.001,
        cam_weight: float = 1.0,
        loss_scale: float = 60.0,
        cache_features: bool = False,
        extra_regressor: Optional[str] = None,
        hmr_trunk_path: Optional[str] = None,
    ) -> None:
        """`hmr_trunk_path` (not a hyperparameter): where the frozen trunk's checkpoint file is on this
        machine, for loading a regressor checkpoint that refers to it from another path."""
        super().__init__()
        body_model = dict(body_model or {"path": "open", "model_type": "smpl", "gender": "neutral"})
        mlp_hidden = list(mlp_hidden if mlp_hidden is not None else [1024, 1024])
        self.save_hyperparameters({"prior_spec": prior_spec, "body_model": body_model, "features": features,
                                   "mlp_hidden": mlp_hidden, "mlp_dropout": mlp_dropout, "train_heads": train_heads,
                                   "lr": lr, "weight_decay": weight_decay, "keypoint_weight": keypoint_weight,
                                   "openpose_weight": openpose_weight, "gt_keypoint_weight": gt_keypoint_weight,
                                   "joints3d_weight": joints3d_weight, "pose_weight": pose_weight,
                                   "beta_weight": beta_weight, "cam_weight": cam_weight, "loss_scale": loss_scale,
                                   "cache_features": cache_features, "extra_regressor": extra_regressor})
        if features not in FEATURE_SIZES:
            raise ValueError(f"features must be one of {sorted(FEATURE_SIZES)}, got {features!r}")
        self.hmr = HMR()
        self.prior = prior_from_architecture(prior_spec)
        if self.prior.latent_is_pose:
            raise ValueError(f"image regression needs a prior with a latent space and a decoder; a {self.prior.kind!r} "
                             "prior's latent is the pose itself (that is direct pose regression, not a prior)")
        self.mlp = build_mlp(FEATURE_SIZES[features], mlp_hidden, int(self.prior.latent_dim), mlp_dropout)
        for p in self.hmr.parameters():
            p.requires_grad_(False)
        if train_heads:
            for m in self.hmr.head_modules():
                for p in m.parameters():
                    p.requires_grad_(True)
        # The body model is rebuilt from its path, kept out of the state dict (not a registered submodule).
        bm = load_body_model(body_model["path"], model_type=body_model.get("model_type", "smpl"),
                             gender=body_model.get("gender", "neutral"))
        extra = None
        if extra_regressor is not None:  # SPIN's J_regressor_extra.npy (9, V): SPIN's exact 49 keypoints on SMPL
            extra = np.load(extra_regressor, allow_pickle=False)
        kp_map = keypoint_map_for_body_model(bm, "spin49", extra_regressor=extra)
        self._modules_outside = {"body_model": bm, "keypoint_map": kp_map}
        self._feature_cache: dict[str, torch.Tensor] = {}
        self._trunk_file: Optional[dict[str, Any]] = None  # set by use_trunk_file
        self._trunk_path_override = hmr_trunk_path
        self.train(True)

    # --- helpers -----------------------------------------------------------------------------------
    @classmethod
    def from_prior(cls, prior: Prior, source: str = "", **kwargs: Any) -> ImageRegressionModule:
        """A module around a loaded prior with a latent space (GAN, VPoser), its weights copied in."""
        module = cls({**architecture_of(prior), "source": str(source)}, **kwargs)
        module.prior.load_state_dict(prior.state_dict())
        return module

    @property
    def body_model(self) -> nn.Module:
        bm = self._modules_outside["body_model"]
        if bm.device != self.device:
            bm = self._modules_outside["body_model"] = bm.to(self.device)
            self._modules_outside["keypoint_map"] = self._modules_outside["keypoint_map"].to(self.device)
        return bm

    @property
    def keypoint_map(self):
        _ = self.body_model  # moves the map with the model
        return self._modules_outside["keypoint_map"]

    def train(self, mode: bool = True) -> ImageRegressionModule:
        """The backbone (and the heads unless trained) stay in eval mode; the prior always does."""
        super().train(mode)
        self.hmr.eval()
        if self.hparams.train_heads and mode:
            self.hmr.drop1.train()
            self.hmr.drop2.train()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --- checkpoints without the frozen trunk ----------------------------------------------------------
    def use_trunk_file(self, path: str, loaded_keys: list[str]) -> None:
        """Record that `loaded_keys` of `self.hmr` came from the HMR/SPIN/EFT checkpoint at `path`.

        Checkpoints then store the file's path and SHA-256 instead of those frozen tensors (~100 MB of a
        ResNet-50 each) and reload them from the file. Trained heads (`train_heads`) are always stored."""
        heads = tuple(f"{name}." for name in ("fc1", "fc2", "decpose", "decshape", "deccam"))
        keys = sorted(k for k in loaded_keys if not (self.hparams.train_heads and k.startswith(heads)))
        self._trunk_file = {"path": os.path.abspath(path), "sha256": sha256_file(path), "keys": keys}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trunk_file is None:
            return
        state = checkpoint["state_dict"]
        for k in self._trunk_file["keys"]:
            state.pop(f"hmr.{k}", None)
        checkpoint["hmr_trunk_file"] = dict(self._trunk_file)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ref = checkpoint.get("hmr_trunk_file")
        if ref is None:
            return
        path = self._trunk_path_override or ref["path"]
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"this regressor checkpoint keeps its frozen HMR trunk in {ref['path']} (sha256 {ref['sha256'][:12]}...), "
                f"not found{'' if path == ref['path'] else f' at {path}'}: pass its location "
                "(eval-regressor: hmr_trunk_path=...; Python: load_from_checkpoint(..., hmr_trunk_path=...))")
        digest = sha256_file(path)
        if digest != ref["sha256"]:
            raise ValueError(f"{path}: sha256 {digest[:12]}... is not the trunk this checkpoint was trained with "
                             f"({ref['sha256'][:12]}... from {ref['path']})")
        load_hmr_checkpoint(self.hmr, path)  # into this module's own HMR; the stored keys then load over it
        own = self.hmr.state_dict()
        checkpoint["state_dict"].update({f"hmr.{k}": own[k] for k in ref["keys"]})
        self._trunk_file = {**ref, "path": os.path.abspath(path)}

    def _backbone_features(self, images: torch.Tensor, keys: Optional[list[str]] = None,
                           augmented: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pooled ResNet-50 features (B, 2048), no grad; cached per sample key for un-augmented crops."""
        use_cache = self.hparams.cache_features and keys is not None
        if use_cache and all(k in self._feature_cache for k in keys):
            return torch.stack([self._feature_cache[k] for k in keys]).to(self.device)
        with torch.no_grad():
            feats = self.hmr.features(images)
        if use_cache:
            for j, k in enumerate(keys):
                if augmented is None or not bool(augmented[j]):
                    self._feature_cache[k] = feats[j].detach().cpu()
        return feats

    # --- forward -----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, keys: Optional[list[str]] = None,
                augmented: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Images (B, 3, 224, 224) -> latent, body-pose rotations, mesh, joints, 49 keypoints (3D and projected)."""
        feats = self._backbone_features(images, keys, augmented)  # (B, 2048)
        if self.hparams.train_heads:
            hmr = self.hmr.regress(feats)
        else:
            with torch.no_grad():
                hmr = self.hmr.regress(feats)
        f = self.hparams.features
        if f == "pooled":
            x = feats
        elif f == "hidden":
            x = hmr.hidden
        else:
            x = torch.cat([feats, hmr.pose6d, hmr.betas, hmr.cam], 1)
        z = self.prior.project(self.mlp(x))  # (B, latent_dim)
        body_rot = self.prior.decode_matrices(z)  # (B, 21, 3, 3)
        bm = self.body_model
        betas = hmr.betas[:, : bm.num_betas]
        out = bm(body_rot, betas=betas, global_orient=hmr.rotmat[:, 0])
        kp3d = self.keypoint_map(out.vertices, out.joints)  # (B, 49, 3)
        kp2d = hmr.cam[:, None, :1] * kp3d[..., :2] + hmr.cam[:, None, 1:]  # EFT weak projection
        return {"z": z, "body_rot": body_rot, "global_orient": hmr.rotmat[:, 0], "betas": hmr.betas, "cam": hmr.cam,
                "vertices": out.vertices, "joints": out.joints, "keypoints3d": kp3d, "keypoints2d": kp2d}

    # --- losses ------------------------------------------------------------------------------------
    def losses(self, pred: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        h = self.hparams
        gt_kp = batch["keypoints"].to(pred["keypoints2d"])  # (B, 49, 3)
        conf = gt_kp[..., 2:].clone()
        conf[:, :25] *= h.openpose_weight
        conf[:, 25:] *= h.gt_keypoint_weight
        conf = conf * self.keypoint_map.available.to(conf)[None, :, None]  # keypoints the model cannot make
        loss_kp = (conf * (pred["keypoints2d"] - gt_kp[..., :2]) ** 2).mean()

        zero = pred["keypoints2d"].new_zeros(())
        loss_3d = zero
        has_3d = batch.get("has_3d")
        if has_3d is not None and bool((has_3d > 0).any()):
            sel = has_3d > 0
            p = pred["keypoints3d"][sel][:, 25:]
            g = batch["joints3d"][sel].to(p)
            c = g[..., 3:] * self.keypoint_map.available[25:].to(p)[None, :, None]
            p = p - 0.5 * (p[:, 2:3] + p[:, 3:4])  # centre at the mid-hip (SPIN-24 2 and 3)
            gc = g[..., :3] - 0.5 * (g[:, 2:3, :3] + g[:, 3:4, :3])
            loss_3d = (c * (p - gc) ** 2).mean()

        loss_pose, loss_betas = zero, zero
        has_smpl = batch.get("has_smpl")
        if has_smpl is not None and bool((has_smpl > 0).any()):
            sel = has_smpl > 0
            gt_body = batch["body_pose"][sel][:, :21].to(pred["body_rot"])
            pr, gr = pred["body_rot"][sel], gt_body
            if h.train_heads:
                pr = torch.cat([pred["global_orient"][sel][:, None], pr], 1)
                gr = torch.cat([batch["global_orient"][sel][:, None].to(gr), gr], 1)
                loss_betas = ((pred["betas"][sel] - batch["betas"][sel].to(gr)) ** 2).mean()
            loss_pose = ((pr - gr) ** 2).mean()
        loss_cam = ((torch.exp(-10.0 * pred["cam"][:, 0])) ** 2).mean() if h.train_heads else zero
        total = h.loss_scale * (h.keypoint_weight * loss_kp + h.joints3d_weight * loss_3d + h.pose_weight * loss_pose
                                + h.beta_weight * loss_betas + h.cam_weight * loss_cam)
        return {"loss": total, "keypoints": loss_kp, "joints3d": loss_3d, "pose": loss_pose, "betas": loss_betas,
                "cam": loss_cam}

    def _step(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        pred = self(batch["img"], batch.get("key"), batch.get("augmented"))
        return pred, self.losses(pred, batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        _, losses = self._step(batch)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"image regression: training loss became non-finite at step {self.global_step} "
                f"({ {k: float(v) for k, v in losses.items()} }); lower optim.lr (now {self.hparams.lr})"
            )
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=True, on_epoch=True,
                      batch_size=batch["img"].shape[0])
        return losses["loss"]

    def gt_joints(self, batch: dict[str, Any]) -> torch.Tensor:
        """Body-model kinematic joints (B, J, 3) of the batch's (pseudo) ground-truth SMPL parameters."""
        bm = self.body_model
        out = bm(batch["body_pose"].to(bm.dtype), betas=batch["betas"][:, : bm.num_betas],
                 global_orient=batch["global_orient"])
        return out.joints

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        from pose_prior.evaluation.metrics3d import mpjpe, p_mpjpe

        pred, losses = self._step(batch)
        B = batch["img"].shape[0]
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, on_epoch=True, batch_size=B, sync_dist=True)
        if "body_pose" in batch:  # joint error against the (pseudo) GT parameters, body-model joints -> LSP-14
            gt = self.gt_joints(batch)
            idx = list(SMPL24_TO_LSP14)
            p14 = pred["joints"][:, idx] - pred["joints"][:, :1]
            g14 = gt[:, idx] - gt[:, :1]
            self.log_dict({"val/mpjpe_lsp14_params_mm": mpjpe(p14, g14).mean() * 1000.0,
                           "val/pmpjpe_lsp14_params_mm": p_mpjpe(p14, g14).mean().float() * 1000.0},
                          on_epoch=True, batch_size=B, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.trainable_parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
