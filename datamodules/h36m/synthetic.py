"""Synthetic H3.6M Protocol-2-format file for the embedded default: bodies posed with AMASS poses,
seen by a known camera, so the fitting protocol can be checked end to end without H3.6M.

Per frame: a body pose (from the prepared AMASS TEST split: the synthetic demo data by default), a
global orientation upright and facing the camera (180 deg about x, yaw within +-max_yaw, pitch/roll
within +-max_tilt), a translation putting the pelvis within 0.1 m of the optical axis at SPIN's typical depth (focal 5000 px on a 224 px crop: a body of
~1.7 m spans ~150-210 px). The "image" is that 224 x 224 crop itself: center = (112, 112),
scale = 224 / 200, so SPIN's crop transform is the identity and the principal point is the crop centre.

Written keys: `imgname`, `center`, `scale`, `S` (N, 24, 4) exactly as SPIN's P2 file (metres, camera
frame, root-centred 17 joints of the body model's H3.6M regressor at SPIN-24 rows, column 3 = 1), plus
`part` (N, 24, 3): the same 17 joints projected (H3.6M's 2D ground truth is the projection of its 3D
joints), confidence 1, zeros elsewhere; and `gt_body_pose` (N, 63), `gt_global_orient` (N, 3),
`gt_transl` (N, 3), `focal` () for checks.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from pose_prior.body_model.keypoints import H36M17_TO_SPIN24
from pose_prior.fitting.camera import perspective_project
from pose_prior.io import atomic_savez
from pose_prior.rotations import axis_angle_to_matrix, matrix_to_axis_angle

CROP_RES = 224
CAMERA_ID = "60457274"


def upright_orientations(n: int, rng: np.random.Generator, max_yaw_deg: float = 60.0,
                         max_tilt_deg: float = 10.0) -> np.ndarray:
    """(n, 3) axis-angle: y-up body turned upright for a y-down camera, facing it within +-max_yaw."""
    yaw, pitch, roll = (np.radians(rng.uniform(-m, m, n)) for m in (max_yaw_deg, max_tilt_deg, max_tilt_deg))
    flip = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    aa = np.stack([pitch, yaw, roll], -1)  # small rotation in the camera frame
    R = axis_angle_to_matrix(torch.from_numpy(aa)) @ flip  # (n, 3, 3)
    return matrix_to_axis_angle(R).numpy()


def synthesize_h36m(
    body_model: torch.nn.Module,
    poses: np.ndarray,
    j_regressor_h36m: np.ndarray,
    seed: int = 0,
    focal: float = 5000.0,
    depth_range: tuple[float, float] = (40.0, 55.0),
    max_yaw_deg: float = 60.0,
    max_tilt_deg: float = 10.0,
) -> dict[str, np.ndarray]:
    """Arrays of a synthetic P2 file for body poses (N, 63)."""
    rng = np.random.default_rng(seed)
    N = poses.shape[0]
    orient = upright_orientations(N, rng, max_yaw_deg, max_tilt_deg)
    transl = np.stack([rng.uniform(-0.1, 0.1, N), rng.uniform(-0.1, 0.1, N), rng.uniform(*depth_range, N)], -1)
    reg = torch.as_tensor(j_regressor_h36m, dtype=torch.float64)
    S = np.zeros((N, 24, 4))
    part = np.zeros((N, 24, 3))
    center = np.full((N, 2), CROP_RES / 2.0)
    with torch.no_grad():
        for lo in range(0, N, 256):
            sl = slice(lo, min(N, lo + 256))
            pose = torch.as_tensor(poses[sl], dtype=body_model.dtype)
            out = body_model(pose, global_orient=torch.as_tensor(orient[sl], dtype=body_model.dtype))
            verts = out.vertices.reshape(pose.shape[0], -1, 3).to(torch.float64)
            j17 = torch.einsum("jv,bvc->bjc", reg, verts)  # (b, 17, 3) camera frame without translation
            transl[sl, :2] -= j17[:, 0, :2].numpy()  # pelvis near the optical axis (crop centre)
            t = torch.as_tensor(transl[sl])
            uv = perspective_project(j17, t, focal, torch.as_tensor(center[sl]))  # (b, 17, 2)
            S[sl, H36M17_TO_SPIN24, :3] = (j17 - j17[:, :1]).numpy()
            S[sl, H36M17_TO_SPIN24, 3] = 1.0
            part[sl, H36M17_TO_SPIN24, :2] = uv.numpy()
            part[sl, H36M17_TO_SPIN24, 2] = 1.0
    imgname = np.array([f"images/SYN_Synthetic_{i // 1000}.{CAMERA_ID}_{i % 1000 + 1:06d}.jpg" for i in range(N)])
    return {
        "imgname": imgname,
        "center": center,
        "scale": np.full(N, CROP_RES / 200.0),
        "S": S,
        "part": part,
        "gt_body_pose": np.asarray(poses, dtype=np.float64),
        "gt_global_orient": orient,
        "gt_transl": transl,
        "focal": np.float64(focal),
    }


def write_synthetic_h36m(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write the arrays as an npz, atomically."""
    path = Path(path)
    atomic_savez(path, **arrays)
    return path


def select_poses(poses: np.ndarray, frames: int, seed: int) -> np.ndarray:
    """`frames` rows spread evenly over the pose array (deterministic; all rows if fewer)."""
    if poses.shape[0] == 0:
        raise ValueError("no poses to synthesise H3.6M frames from (empty AMASS test split)")
    idx = np.linspace(0, poses.shape[0] - 1, num=min(frames, poses.shape[0])).round().astype(int)
    return np.asarray(poses[idx], dtype=np.float64)


def ensure_synthetic_h36m(
    path: str | os.PathLike,
    body_model_path: str,
    test_poses: np.ndarray,
    frames: int = 256,
    seed: int = 0,
    focal: float = 5000.0,
    j_regressor: str | None = None,
) -> Path:
    """Write the synthetic file at `path` unless it exists; returns the path."""
    from pose_prior.body_model import load_body_model
    from pose_prior.body_model.h36m_regressor import h36m_regressor_for

    path = Path(path)
    if path.is_file():
        return path
    body_model = load_body_model(body_model_path, "smpl", dtype=torch.float64)
    reg = h36m_regressor_for(body_model_path, j_regressor, body_model.num_vertices)
    arrays = synthesize_h36m(body_model, select_poses(test_poses, frames, seed), reg, seed=seed, focal=focal)
    return write_synthetic_h36m(path, arrays)
