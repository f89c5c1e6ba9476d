"""SMPLify camera: perspective projection, translation initialisation and the Geman-McClure robustifier.

Conventions (docs/protocols.md#camera): rotation identity, focal length 5000 px for x and y,
u = f (X + tx) / (Z + tz) + cx, v = f (Y + ty) / (Z + tz) + cy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_FOCAL = 5000.0
GMOF_SIGMA = 100.0  # px (SPIN and smplify-x)
# BODY_25 torso edges of smplify-x's guess_init: (LShoulder, LHip), (RShoulder, RHip)
OPENPOSE25_TORSO_EDGES = ((5, 12), (2, 9))
# the same edges in SPIN-24: (Left Shoulder, Left Hip), (Right Shoulder, Right Hip)
SPIN24_TORSO_EDGES = ((9, 3), (8, 2))


def _focal_batch(focal: float | torch.Tensor, B: int, ref: torch.Tensor) -> torch.Tensor:
    """Focal length as scalar, (B,) or (B, 2) -> (B, 2) (fx, fy)."""
    f = torch.as_tensor(focal, dtype=ref.dtype, device=ref.device)
    if f.ndim == 0:
        return f.expand(B, 2)
    if f.ndim == 1:
        if f.shape[0] != B:
            raise ValueError(f"focal given per sample must have shape ({B},), got {tuple(f.shape)}")
        return f[:, None].expand(B, 2)
    if f.shape != (B, 2):
        raise ValueError(f"focal must be a scalar, ({B},) or ({B}, 2), got {tuple(f.shape)}")
    return f


def _center_batch(center: torch.Tensor | Sequence[float], B: int, ref: torch.Tensor) -> torch.Tensor:
    """Principal point as (2,) or (B, 2) -> (B, 2)."""
    c = torch.as_tensor(center, dtype=ref.dtype, device=ref.device)
    if c.shape == (2,):
        return c.expand(B, 2)
    if c.shape != (B, 2):
        raise ValueError(f"center must be (2,) or ({B}, 2), got {tuple(c.shape)}")
    return c


def perspective_project(
    points: torch.Tensor,
    translation: torch.Tensor,
    focal: float | torch.Tensor = DEFAULT_FOCAL,
    center: torch.Tensor | Sequence[float] = (0.0, 0.0),
    rotation: torch.Tensor | None = None,
) -> torch.Tensor:
    """points (B, N, 3), translation (B, 3), focal scalar/(B,)/(B, 2), center (2,)/(B, 2) -> pixels (B, N, 2)."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, N, 3), got {tuple(points.shape)}")
    B = points.shape[0]
    if translation.shape != (B, 3):
        raise ValueError(f"translation must be ({B}, 3), got {tuple(translation.shape)}")
    if rotation is not None:
        points = torch.einsum("bij,bnj->bni", rotation, points)
    cam = points + translation[:, None, :]  # (B, N, 3)
    f = _focal_batch(focal, B, points)  # (B, 2)
    c = _center_batch(center, B, points)  # (B, 2)
    return cam[..., :2] / cam[..., 2:3] * f[:, None, :] + c[:, None, :]


def depth_from_torso(
    joints3d: torch.Tensor,
    keypoints2d: torch.Tensor,
    focal: float | torch.Tensor = DEFAULT_FOCAL,
    edges: Sequence[tuple[int, int]] = OPENPOSE25_TORSO_EDGES,
    default_depth: float = 2 * DEFAULT_FOCAL / (224 * 0.9),
) -> torch.Tensor:
    """SMPLify "similar triangles" depth: tz = f * mean(3D edge lengths) / mean(2D edge lengths), (B,).

    joints3d (B, N, 3) model joints in the layout of keypoints2d (B, N, 2 or 3, last = confidence).
    Only edges whose two endpoints have confidence > 0 count; with none, `default_depth` (SPIN's
    depth for its mean camera scale 0.9 on a 224 crop).
    """
    i = torch.tensor([a for a, _ in edges], device=joints3d.device)
    j = torch.tensor([b for _, b in edges], device=joints3d.device)
    len3d = (joints3d[:, i] - joints3d[:, j]).norm(dim=-1)  # (B, E)
    len2d = (keypoints2d[:, i, :2] - keypoints2d[:, j, :2]).norm(dim=-1).to(joints3d.dtype)
    if keypoints2d.shape[-1] >= 3:
        valid = (keypoints2d[:, i, 2] > 0) & (keypoints2d[:, j, 2] > 0)
    else:
        valid = torch.ones_like(len2d, dtype=torch.bool)
    valid = valid & (len2d > 0)
    n = valid.sum(-1)  # (B,)
    mean3d = (len3d * valid).sum(-1) / n.clamp(min=1)
    mean2d = (len2d * valid).sum(-1) / n.clamp(min=1)
    f = _focal_batch(focal, joints3d.shape[0], joints3d)[:, 0]
    tz = f * mean3d / mean2d.clamp(min=torch.finfo(joints3d.dtype).tiny)
    return torch.where(n > 0, tz, torch.full_like(tz, default_depth))


def init_translation_similar_triangles(
    joints3d: torch.Tensor,
    keypoints2d: torch.Tensor,
    focal: float | torch.Tensor = DEFAULT_FOCAL,
    edges: Sequence[tuple[int, int]] = OPENPOSE25_TORSO_EDGES,
) -> torch.Tensor:
    """smplify-x `guess_init`: translation (B, 3) = (0, 0, tz) with tz from `depth_from_torso`."""
    tz = depth_from_torso(joints3d, keypoints2d, focal, edges)
    return torch.stack([torch.zeros_like(tz), torch.zeros_like(tz), tz], dim=-1)


def estimate_translation(
    joints3d: torch.Tensor,
    keypoints2d: torch.Tensor,
    focal: float | torch.Tensor = DEFAULT_FOCAL,
    center: torch.Tensor | Sequence[float] = (112.0, 112.0),
) -> torch.Tensor:
    """SPIN's `estimate_translation_np`, batched: weighted linear least squares for t (B, 3).

    joints3d (B, N, 3) model joints (camera rotation identity), keypoints2d (B, N, 3) pixels +
    confidence; weights sqrt(conf). Per joint: [f, 0, cx - u] t = (u - cx) Z - f X and
    [0, f, cy - v] t = (v - cy) Z - f Y. Solved in float64.
    """
    dt = torch.float64
    S = joints3d.to(dt)
    B, N, _ = S.shape
    uv = keypoints2d[..., :2].to(dt)
    conf = keypoints2d[..., 2].to(dt) if keypoints2d.shape[-1] >= 3 else torch.ones(B, N, dtype=dt, device=S.device)
    f = _focal_batch(focal, B, S)  # (B, 2)
    c = _center_batch(center, B, S)  # (B, 2)
    w = conf.clamp(min=0).sqrt()  # (B, N)
    zeros = torch.zeros_like(S[..., 0])
    fx = f[:, None, 0].expand(B, N)
    fy = f[:, None, 1].expand(B, N)
    rows_x = torch.stack([fx, zeros, c[:, None, 0] - uv[..., 0]], -1)  # (B, N, 3)
    rows_y = torch.stack([zeros, fy, c[:, None, 1] - uv[..., 1]], -1)
    rhs_x = (uv[..., 0] - c[:, None, 0]) * S[..., 2] - fx * S[..., 0]  # (B, N)
    rhs_y = (uv[..., 1] - c[:, None, 1]) * S[..., 2] - fy * S[..., 1]
    Q = torch.cat([rows_x, rows_y], 1) * torch.cat([w, w], 1)[..., None]  # (B, 2N, 3)
    r = torch.cat([rhs_x, rhs_y], 1) * torch.cat([w, w], 1)  # (B, 2N)
    A = Q.transpose(1, 2) @ Q  # (B, 3, 3)
    b = (Q.transpose(1, 2) @ r[..., None])[..., 0]  # (B, 3)
    return torch.linalg.solve(A, b).to(joints3d.dtype)


def gmof(residual: torch.Tensor, sigma: float = GMOF_SIGMA) -> torch.Tensor:
    """Geman-McClure robustifier, elementwise: sigma^2 r^2 / (sigma^2 + r^2)."""
    sq = residual * residual
    return sigma**2 * sq / (sigma**2 + sq)
