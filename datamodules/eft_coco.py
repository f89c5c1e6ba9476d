"""EFT pseudo-ground-truth (COCO and the others) over an image folder: reader, crops, augmentation, DataModule.

EFT's JSON (docs/formats.md#eft-pseudo-ground-truth-json): `{"ver": 0.1, "data": [...], "meta": {...}}`; per element `parm_pose`
(24 x 3 x 3 rotation matrices, joint 0 = global orientation), `parm_shape` (10), `parm_cam` (weak
perspective [s, tx, ty] of the bbox crop), `bbox_center` (x, y) px, `bbox_scale` (crop side = 200*scale
px), `gt_keypoint_2d` (49 x 3, SPIN-49 order, original-image pixels + confidence), `imageName`.

A sample is SPIN's: a square crop of side 200*scale px at the centre, resized to 224, ImageNet
normalisation; training augmentation = scale jitter, in-plane rotation, horizontal flip (with SPIN's
flip permutations for keypoints, joints and pose) and per-channel pixel noise. Keypoints come out in
normalised crop coordinates [-1, 1] (crop px = (x_n + 1) * 112), the frame the weak-perspective camera
projects into. Geometry uses continuous pixel coordinates (pixel i spans [i, i+1)).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pose_prior.body_model.keypoints import J24_FLIP_PERM, J49_FLIP_PERM, SPIN24_TO_OP18, KeypointMap
from pose_prior.hmr import IMG_RES, denormalize_image, normalize_image  # noqa: F401 (re-exported)
from pose_prior.io import atomic_write_text

# SMPL-24 joint flip permutation (SPIN:constants.py SMPL_JOINTS_FLIP_PERM)
SMPL24_FLIP_PERM = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)
REQUIRED_KEYS = ("parm_pose", "parm_shape", "parm_cam", "bbox_scale", "bbox_center", "gt_keypoint_2d", "imageName")
_MIRROR = np.diag([-1.0, 1.0, 1.0])


class EftFileError(ValueError):
    """An EFT JSON file does not have the expected layout."""


@dataclass
class EftData:
    """The fits of one EFT JSON file as arrays (float64)."""

    image_names: list[str]
    pose: np.ndarray  # (N, 24, 3, 3) rotation matrices, joint 0 = global orientation
    betas: np.ndarray  # (N, 10)
    cam: np.ndarray  # (N, 3) weak perspective [s, tx, ty]
    center: np.ndarray  # (N, 2) px
    scale: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, 49, 3) original-image px + confidence
    annot_ids: list[Optional[int]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    version: float = 0.1

    def __len__(self) -> int:
        return len(self.image_names)


def _array(value: Any, shape: tuple[int, ...], path: str, i: int, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise EftFileError(f"{path}: data[{i}]['{key}'] is not numeric ({err})") from err
    if arr.shape != shape:
        raise EftFileError(f"{path}: data[{i}]['{key}'] must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise EftFileError(f"{path}: data[{i}]['{key}'] contains non-finite values")
    return arr


def read_eft_json(path: str | os.PathLike) -> EftData:
    """Read an EFT fitting JSON (COCO2014-All-ver01.json, ...) into arrays, validating every element."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (an EFT JSON such as COCO2014-All-ver01.json)")
    with open(path) as fh:
        try:
            top = json.load(fh)
        except json.JSONDecodeError as err:
            raise EftFileError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(top, dict) or not isinstance(top.get("data"), list):
        raise EftFileError(f"{path}: expected a JSON object with a 'data' list (EFT format), got "
                           f"{sorted(top)[:6] if isinstance(top, dict) else type(top).__name__}")
    items = top["data"]
    names, pose, betas, cam, center, scale, kps, annot = [], [], [], [], [], [], [], []
    for i, d in enumerate(items):
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise EftFileError(f"{path}: data[{i}] lacks key(s) {missing}; an EFT fit has {list(REQUIRED_KEYS)}")
        if d.get("smpltype", "smpl") != "smpl":
            raise EftFileError(f"{path}: data[{i}]['smpltype'] is {d['smpltype']!r}; only 'smpl' fits are supported")
        names.append(str(d["imageName"]))
        pose.append(_array(d["parm_pose"], (24, 3, 3), path, i, "parm_pose"))
        betas.append(_array(d["parm_shape"], (10,), path, i, "parm_shape"))
        cam.append(_array(d["parm_cam"], (3,), path, i, "parm_cam"))
        center.append(_array(d["bbox_center"], (2,), path, i, "bbox_center"))
        s = float(_array(d["bbox_scale"], (), path, i, "bbox_scale"))
        if s <= 0:
            raise EftFileError(f"{path}: data[{i}]['bbox_scale'] must be > 0, got {s}")
        scale.append(s)
        kps.append(_array(d["gt_keypoint_2d"], (49, 3), path, i, "gt_keypoint_2d"))
        annot.append(int(d["annotId"]) if "annotId" in d else None)
    n = len(items)
    return EftData(
        names,
        np.stack(pose) if n else np.zeros((0, 24, 3, 3)),
        np.stack(betas) if n else np.zeros((0, 10)),
        np.stack(cam) if n else np.zeros((0, 3)),
        np.stack(center) if n else np.zeros((0, 2)),
        np.asarray(scale, dtype=np.float64),
        np.stack(kps) if n else np.zeros((0, 49, 3)),
        annot, dict(top.get("meta", {})), float(top.get("ver", 0.1)),
    )


def write_eft_json(path: str | os.PathLike, data: EftData) -> None:
    """Write `data` in EFT's format (ver 0.1; `joint_validity_openpose18` derived as EFT's exporter does)."""
    items = []
    for i in range(len(data)):
        item = {
            "parm_pose": data.pose[i].tolist(),
            "parm_shape": data.betas[i].tolist(),
            "parm_cam": data.cam[i].tolist(),
            "bbox_scale": float(data.scale[i]),
            "bbox_center": data.center[i].tolist(),
            "gt_keypoint_2d": data.keypoints[i].tolist(),
            "joint_validity_openpose18": data.keypoints[i, 25:, 2][list(SPIN24_TO_OP18)].tolist(),
            "smpltype": "smpl",
            "imageName": data.image_names[i],
        }
        if data.annot_ids and data.annot_ids[i] is not None:
            item["annotId"] = int(data.annot_ids[i])
        items.append(item)
    atomic_write_text(Path(path), json.dumps({"ver": data.version, "data": items, "meta": data.meta}))


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------


def weak_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """EFT's weak projection s * X[..., :2] + (tx, ty): points (B, N, 3), cam (B, 3) -> (B, N, 2) normalised crop coords."""
    return cam[:, None, :1] * points[..., :2] + cam[:, None, 1:]


def crop_to_image(xn: np.ndarray | torch.Tensor, center: Any, scale: Any) -> Any:
    """Normalised crop coords (..., N, 2) -> original-image px: c + 100 * scale * x_n (per sample centre/scale)."""
    if isinstance(xn, torch.Tensor):
        c = torch.as_tensor(center, dtype=xn.dtype, device=xn.device)
        s = torch.as_tensor(scale, dtype=xn.dtype, device=xn.device)
    else:
        c, s = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    return c[..., None, :] + 100.0 * s[..., None, None] * xn


def eft_keypoints_px(
    body_model: torch.nn.Module,
    keypoint_map: KeypointMap,
    pose: np.ndarray | torch.Tensor,
    betas: np.ndarray | torch.Tensor,
    cam: np.ndarray | torch.Tensor,
    center: np.ndarray | torch.Tensor,
    scale: np.ndarray | torch.Tensor,
) -> np.ndarray:
    """The 2D keypoints (N, K, 2) in original-image px of EFT fits: body model -> weak projection -> bbox -> image."""
    dt = body_model.dtype
    pose_t = torch.as_tensor(np.asarray(pose), dtype=dt)
    with torch.no_grad():
        out = body_model(pose_t[:, 1:], betas=torch.as_tensor(np.asarray(betas), dtype=dt), global_orient=pose_t[:, 0])
        kp3d = keypoint_map(out.vertices, out.joints)  # (N, K, 3)
        xn = weak_project(kp3d, torch.as_tensor(np.asarray(cam), dtype=dt))
    return crop_to_image(xn.double().numpy(), center, scale)


def rotation_2d(degrees: float) -> np.ndarray:
    """Rotation of image coordinates (x right, y down) that turns the picture counter-clockwise by `degrees`."""
    r = math.radians(degrees)
    return np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])


def crop_matrix(center: Any, scale: float, res: int = IMG_RES, rot: float = 0.0, flip: bool = False) -> np.ndarray:
    """(3, 3) affine map from original px to crop px: square of side 200*scale at `center` -> res x res, then rotate, flip."""
    cx, cy = float(center[0]), float(center[1])
    side = 200.0 * float(scale)
    A = np.eye(3)
    A[:2, :2] = rotation_2d(rot) * (res / side)
    A[:2, 2] = A[:2, :2] @ np.array([-cx, -cy]) + res / 2.0
    if flip:
        A = np.array([[-1.0, 0.0, res], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ A
    return A


def crop_image(image: Image.Image, matrix: np.ndarray, res: int = IMG_RES) -> np.ndarray:
    """Resample `image` through `matrix` (original px -> crop px) into a (res, res, 3) uint8 crop (bilinear)."""
    inv = np.linalg.inv(matrix)
    out = image.convert("RGB").transform((res, res), Image.Transform.AFFINE, data=tuple(inv[:2].ravel()),
                                         resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out)


def keypoints_to_crop(kp_px: np.ndarray, matrix: np.ndarray, res: int = IMG_RES) -> np.ndarray:
    """(N, 3) original px + conf -> (N, 3) normalised crop coords (2u/res - 1) + conf (no permutation)."""
    uv = kp_px[:, :2] @ matrix[:2, :2].T + matrix[:2, 2]
    return np.concatenate([2.0 * uv / res - 1.0, kp_px[:, 2:3]], axis=1)


def rotation_3d(degrees: float) -> np.ndarray:
    """The camera-frame rotation about the optical axis matching `rotation_2d` on projected points."""
    R = np.eye(3)
    R[:2, :2] = rotation_2d(degrees)
    return R


def flip_pose(rotmats: np.ndarray) -> np.ndarray:
    """SMPL rotation matrices (24, 3, 3) of a body -> those of its mirror image (swap sides, conjugate by x-mirror)."""
    return _MIRROR @ rotmats[list(SMPL24_FLIP_PERM)] @ _MIRROR


def augment_params(pose: np.ndarray, rot: float, flip: bool) -> np.ndarray:
    """Apply SPIN's image rotation (to the global orientation) and flip (whole pose) to (24, 3, 3) matrices."""
    pose = pose.copy()
    if rot:
        pose[0] = rotation_3d(rot) @ pose[0]
    return flip_pose(pose) if flip else pose


def augment_joints3d(S: np.ndarray, rot: float, flip: bool) -> np.ndarray:
    """SPIN-24 3D joints (24, 4) -> rotated about the optical axis, mirrored and permuted if flipped."""
    S = S.copy()
    if rot:
        S[:, :3] = S[:, :3] @ rotation_3d(rot).T
    if flip:
        S = S[list(J24_FLIP_PERM)]
        S[:, 0] = -S[:, 0]
    return S


# --------------------------------------------------------------------------------------------------
# Dataset and DataModule
# --------------------------------------------------------------------------------------------------


@dataclass
class AugmentSettings:
    """SPIN's training augmentation (SPIN:utils/train_options.py defaults)."""

    enabled: bool = True
    flip_prob: float = 0.5
    scale_factor: float = 0.25  # scale ~ clip(1 + sf * N(0,1), 1 - sf, 1 + sf)
    rot_factor: float = 30.0  # degrees ~ clip(rf * N(0,1), -2 rf, 2 rf), applied with probability rot_prob
    rot_prob: float = 0.4
    noise_factor: float = 0.4  # per-channel pixel multiplier in [1 - nf, 1 + nf]


class EftImageDataset(Dataset):
    """Crops of an image folder with EFT fits: dict of tensors per sample (see module docstring)."""

    def __init__(self, json_path: str | os.PathLike, image_dir: str | os.PathLike,
                 augment: AugmentSettings | None = None, res: int = IMG_RES,
                 max_samples: Optional[int] = None) -> None:
        self.json_path = os.fspath(json_path)
        self.data = read_eft_json(json_path)
        self.image_dir = Path(image_dir)
        self.augment = augment or AugmentSettings(enabled=False)
        self.res = int(res)
        self.length = len(self.data) if max_samples is None else min(len(self.data), int(max_samples))
        if self.length == 0:
            raise EftFileError(f"{self.json_path}: no fits in 'data'")

    def __len__(self) -> int:
        return self.length

    def _draw(self, i: int) -> tuple[bool, float, float, np.ndarray]:
        a = self.augment
        if not a.enabled:
            return False, 0.0, 1.0, np.ones(3)
        # torch's RNG: seeded per worker and per epoch by the DataLoader (and by seed_everything)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        flip = bool(rng.random() < a.flip_prob)
        sc = float(np.clip(1.0 + a.scale_factor * rng.standard_normal(), 1.0 - a.scale_factor, 1.0 + a.scale_factor))
        rot = float(np.clip(a.rot_factor * rng.standard_normal(), -2 * a.rot_factor, 2 * a.rot_factor))
        rot = rot if rng.random() < a.rot_prob else 0.0
        noise = rng.uniform(1.0 - a.noise_factor, 1.0 + a.noise_factor, size=3)
        return flip, rot, sc, noise

    def load_image(self, i: int) -> Image.Image:
        path = self.image_dir / self.data.image_names[i]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image of {self.json_path} data[{i}] not found (data.image_dir={self.image_dir})")
        return Image.open(path)

    def __getitem__(self, i: int) -> dict[str, Any]:
        d = self.data
        flip, rot, sc, noise = self._draw(i)
        M = crop_matrix(d.center[i], d.scale[i] * sc, self.res, rot, flip)
        crop = crop_image(self.load_image(i), M, self.res)
        if self.augment.enabled:
            crop = np.clip(crop.astype(np.float64) * noise[None, None, :], 0, 255).astype(np.uint8)
        kp = keypoints_to_crop(d.keypoints[i], M, self.res)
        if flip:
            kp = kp[list(J49_FLIP_PERM)]
        pose = augment_params(d.pose[i], rot, flip)
        return {
            "img": normalize_image(crop),
            "keypoints": torch.as_tensor(kp, dtype=torch.float32),  # (49, 3)
            "global_orient": torch.as_tensor(pose[0], dtype=torch.float32),  # (3, 3)
            "body_pose": torch.as_tensor(pose[1:], dtype=torch.float32),  # (23, 3, 3)
            "betas": torch.as_tensor(d.betas[i], dtype=torch.float32),
            "has_smpl": torch.tensor(1.0),
            "joints3d": torch.zeros(24, 4),  # EFT has no 3D ground truth
            "has_3d": torch.tensor(0.0),
            "center": torch.as_tensor(d.center[i], dtype=torch.float32),
            "scale": torch.tensor(float(d.scale[i]) * sc),
            "augmented": torch.tensor(bool(self.augment.enabled)),
            "key": f"{self.json_path}:{i}",
            "index": i,
        }


class EftDataModule(pl.LightningDataModule):
    """Training crops (augmented) and validation crops (not) from EFT JSON files over image folders."""

    def __init__(self, train_json: str, val_json: Optional[str], image_dir: str, val_image_dir: Optional[str] = None,
                 batch_size: int = 64, num_workers: int = 0, augment: AugmentSettings | None = None,
                 max_train_samples: Optional[int] = None, max_val_samples: Optional[int] = None) -> None:
        super().__init__()
        self.train_json, self.val_json = train_json, val_json
        self.image_dir, self.val_image_dir = image_dir, val_image_dir or image_dir
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.augment = augment or AugmentSettings()
        self.max_train_samples, self.max_val_samples = max_train_samples, max_val_samples
        self.train_set: Optional[EftImageDataset] = None
        self.val_set: Optional[EftImageDataset] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            self.train_set = EftImageDataset(self.train_json, self.image_dir, self.augment,
                                             max_samples=self.max_train_samples)
        if self.val_set is None and self.val_json:
            self.val_set = EftImageDataset(self.val_json, self.val_image_dir, AugmentSettings(enabled=False),
                                           max_samples=self.max_val_samples)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
