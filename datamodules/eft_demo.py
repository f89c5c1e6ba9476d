"""Synthetic EFT-format images (the embedded default of image regression): rendered bodies with known parameters.

`write_demo_images(root, ...)` renders bodies of the given body model (poses from the synthetic AMASS
motions, random shape, camera-facing orientation with yaw, weak-perspective camera) as coloured body
parts over a noisy plain background, and writes:
    root/images/{train,val}_NNNN.png
    root/train.json, root/val.json        EFT's JSON format; keypoints computed from the stored
                                           parameters and camera (the same reader runs on them)
    root/h36m_p2_synthetic.npz            the val split in SPIN's H3.6M P2 format (imgname, center,
                                           scale, S + part) for `make eval-regressor`
    root/J_regressor_standin.npy          (17, V) Fortran-order float64: the body model's kinematic
                                           regressor rows standing in for H3.6M's (NOT SPIN's file)
    root/demo_manifest.json               written last: marks a complete set
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from datamodules.amass.demo import MOTIONS, synthesize_motion
from datamodules.eft_coco import EftData, crop_to_image, eft_keypoints_px, weak_project, write_eft_json
from pose_prior.body_model import load_body_model
from pose_prior.body_model.keypoints import H36M17_TO_SPIN24, keypoint_map_for_body_model
from pose_prior.io import atomic_path, atomic_save, atomic_savez, atomic_write_text
from pose_prior.visual.raster import draw_mesh, part_face_colors

MANIFEST = "demo_manifest.json"
FLIP_X = np.diag([1.0, -1.0, -1.0])  # SMPL (y up, facing +z) -> camera (y down, facing the camera)
# H3.6M-17 meaning (SPIN's order) -> SMPL-24 kinematic joint standing in for it (labelled, not H3.6M's regressor)
H36M17_FROM_SMPL24 = (0, 1, 4, 7, 2, 5, 8, 6, 12, 15, 15, 16, 18, 20, 17, 19, 21)


def standin_h36m_regressor(body_model: torch.nn.Module) -> np.ndarray:
    """(17, V) float64: rows of the body model's own kinematic J_regressor in SPIN's H3.6M-17 order.

    A labelled stand-in for evaluations on the synthetic data with a model that has no H3.6M joint
    regressor (Jaw and Head Top both use the SMPL head joint). Never compare its numbers with H3.6M's.
    """
    reg = body_model.J_regressor.detach().double().cpu().numpy()  # (J, V)
    return np.ascontiguousarray(reg[list(H36M17_FROM_SMPL24)])


def _render(body_model, faces_colors, verts_cam: np.ndarray, cam: np.ndarray, center: np.ndarray, scale: float,
            size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image: noisy plain background + the body projected with EFT's camera."""
    bg = rng.uniform(40, 215, size=3)
    img = bg[None, None, :] + rng.normal(0, 12, size=(size, size, 3))
    img += np.linspace(-20, 20, size)[None, :, None] * rng.uniform(-1, 1)  # a gentle gradient
    img = np.clip(img, 0, 255).astype(np.uint8)
    xn = cam[0] * verts_cam[:, :2] + cam[1:]
    px = crop_to_image(xn[None], center[None], np.array([scale]))[0]
    return draw_mesh(img, px, verts_cam[:, 2], body_model.faces.cpu().numpy(), faces_colors)


def _sample_params(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n SMPL poses (n, 24, 3, 3) in camera orientation, betas (n, 10), cams (n, 3)."""
    motions = list(MOTIONS)
    body = []
    while len(body) < n:
        seq = synthesize_motion(motions[len(body) % len(motions)], 120, 30.0, rng)["pose_body"]  # (T, 63)
        body.extend(seq[rng.choice(len(seq), size=min(8, n - len(body)), replace=False)])
    body_rot = Rotation.from_rotvec(np.asarray(body).reshape(-1, 3)).as_matrix().reshape(n, 21, 3, 3)
    yaw = rng.uniform(-np.pi / 3, np.pi / 3, n)
    tilt = rng.normal(0.0, 0.1, size=(n, 2))
    orient = np.stack([FLIP_X @ Rotation.from_rotvec([tilt[i, 0], yaw[i], tilt[i, 1]]).as_matrix() for i in range(n)])
    pose = np.concatenate([orient[:, None], body_rot, np.broadcast_to(np.eye(3), (n, 2, 3, 3))], axis=1)
    betas = np.clip(rng.normal(0.0, 0.8, size=(n, 10)), -2.0, 2.0) * (np.arange(10) < 4)  # first 4 components
    cams = np.stack([rng.uniform(0.8, 0.95, n), rng.uniform(-0.08, 0.08, n), rng.uniform(-0.05, 0.12, n)], axis=1)
    return pose, betas, cams


def write_demo_images(root: str | Path, body_model: str = "open", num_train: int = 96, num_val: int = 32,
                      image_size: int = 256, seed: int = 0, force: bool = False) -> Path:
    """Write the synthetic EFT-format image set under `root` (skipped if complete with the same settings)."""
    root = Path(root)
    settings = {"body_model": body_model, "num_train": num_train, "num_val": num_val, "image_size": image_size,
                "seed": seed, "version": 1}
    manifest = root / MANIFEST
    if not force and manifest.is_file() and json.loads(manifest.read_text()).get("settings") == settings:
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    bm = load_body_model(body_model, "smpl", dtype=torch.float64)
    kp_map = keypoint_map_for_body_model(bm, "spin49")
    colors = part_face_colors(bm.lbs_weights.cpu().numpy(), bm.faces.cpu().numpy())
    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("val", num_val)):
        pose, betas, cams = _sample_params(n, rng)
        center = image_size / 2 + rng.uniform(-8, 8, size=(n, 2))
        scale = rng.uniform(1.0, 1.15, n) * image_size / 240.0
        with torch.no_grad():
            pt = torch.as_tensor(pose)
            out = bm(pt[:, 1:], betas=torch.as_tensor(betas), global_orient=pt[:, 0])
        verts = out.vertices.reshape(n, -1, 3).numpy()
        names = []
        for i in range(n):
            name = f"{split}_{i:04d}.png"
            img = _render(bm, colors, verts[i], cams[i], center[i], float(scale[i]), image_size, rng)
            with atomic_path(root / "images" / name, suffix=".png") as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            names.append(name)
        kp_px = eft_keypoints_px(bm, kp_map, pose, betas, cams, center, scale)  # (n, 49, 2)
        inside = ((kp_px >= 0) & (kp_px < image_size)).all(-1)
        conf = (kp_map.available.numpy()[None, :] & inside).astype(np.float64)
        keypoints = np.concatenate([kp_px, conf[..., None]], axis=-1)
        data = EftData(names, pose, betas, cams, center, scale, keypoints, [None] * n,
                       {"dbname": f"synthetic_{split}", "rawname": "pose_prior.datamodules.eft_demo"})
        write_eft_json(root / f"{split}.json", data)
        if split == "val":
            _write_p2(root, bm, out.vertices.reshape(n, -1, 3), names, center, scale, keypoints, kp_map)
    atomic_write_text(manifest, json.dumps({"settings": settings, "files": ["train.json", "val.json",
                                            "h36m_p2_synthetic.npz", "J_regressor_standin.npy"]}, indent=1))
    return root


def _write_p2(root: Path, bm, vertices: torch.Tensor, names: list[str], center, scale, keypoints, kp_map) -> None:
    """The val split as SPIN's P2 file: S from the stand-in regressor, root-centred, metres; `part` = SPIN-24 2D."""
    reg = standin_h36m_regressor(bm)
    j17 = np.einsum("jv,bvc->bjc", reg, vertices.double().numpy())
    j17 = j17 - j17[:, :1]
    n = len(names)
    S = np.zeros((n, 24, 4))
    S[:, list(H36M17_TO_SPIN24), :3] = j17
    S[:, list(H36M17_TO_SPIN24), 3] = 1.0
    atomic_savez(root / "h36m_p2_synthetic.npz", imgname=np.array([f"images/{nm}" for nm in names]),
                 center=np.asarray(center, np.float64), scale=np.asarray(scale, np.float64), S=S,
                 part=keypoints[:, 25:])

    def write_reg(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asfortranarray(reg))

    atomic_save(root / "J_regressor_standin.npy", write_reg)


def run_demo_images(cfg: Any) -> Path:
    """Runner of `make demo-images`."""
    d = cfg.demo_images
    root = write_demo_images(cfg.data.demo_dir, cfg.body_model.path, d.num_train, d.num_val, d.image_size, d.seed,
                             force=bool(d.force))
    print(f"synthetic EFT-format images: {root}")
    return root


__all__ = ["standin_h36m_regressor", "write_demo_images", "run_demo_images", "weak_project"]
