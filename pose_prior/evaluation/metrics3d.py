"""3D joint errors: MPJPE, Procrustes-aligned P-MPJPE, and the H3.6M Protocol-2 evaluation (SPIN/EFT).

Procrustes follows SPIN:utils/pose_utils.py `compute_similarity_transform` (from HMR), batched and in
float64: per frame, centre both sets, K = X1 X2^T, SVD K = U S V^T, R = V Z U^T with
Z = diag(1, 1, sign(det(U V^T))) (no reflections), scale = trace(R K) / ||X1||^2, t = mu2 - scale R mu1.
"""

from __future__ import annotations

import torch

from pose_prior.body_model.keypoints import H36M_TO_J14, J24_TO_J14


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != gt.shape:
        raise ValueError(f"expected pred and gt of the same shape (B, J, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")


def similarity_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per frame, the similarity transform of pred (B, J, 3) closest to gt (B, J, 3), applied to pred."""
    _check_pair(pred, gt)
    S1 = pred.to(torch.float64).transpose(1, 2)  # (B, 3, J)
    S2 = gt.to(torch.float64).transpose(1, 2)
    mu1 = S1.mean(-1, keepdim=True)  # (B, 3, 1)
    mu2 = S2.mean(-1, keepdim=True)
    X1 = S1 - mu1
    X2 = S2 - mu2
    var1 = (X1 * X1).sum((-1, -2))  # (B,)
    K = X1 @ X2.transpose(1, 2)  # (B, 3, 3)
    U, _, Vh = torch.linalg.svd(K)
    V = Vh.transpose(1, 2)
    Z = torch.eye(3, dtype=torch.float64, device=pred.device).repeat(pred.shape[0], 1, 1)
    Z[:, 2, 2] = torch.sign(torch.linalg.det(U @ V.transpose(1, 2)))
    R = V @ Z @ U.transpose(1, 2)  # (B, 3, 3)
    scale = torch.diagonal(R @ K, dim1=-2, dim2=-1).sum(-1) / var1  # (B,)
    t = mu2 - scale[:, None, None] * (R @ mu1)  # (B, 3, 1)
    S1_hat = scale[:, None, None] * (R @ S1) + t
    return S1_hat.transpose(1, 2).to(pred.dtype)


def mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-joint Euclidean error per frame (B,), in the input units."""
    _check_pair(pred, gt)
    return (pred - gt).norm(dim=-1).mean(-1)


def p_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MPJPE after per-frame similarity (Procrustes) alignment of pred to gt (B,), float64, input units."""
    aligned = similarity_align(pred.to(torch.float64), gt.to(torch.float64))
    return (aligned - gt.to(torch.float64)).norm(dim=-1).mean(-1)


def regress_h36m_joints(vertices: torch.Tensor, j_regressor_h36m: torch.Tensor) -> torch.Tensor:
    """vertices (B, V, 3) x J_regressor_h36m (17, V) -> H3.6M-17 joints (B, 17, 3) in float64."""
    reg = torch.as_tensor(j_regressor_h36m, dtype=torch.float64, device=vertices.device)
    if reg.ndim != 2 or reg.shape[1] != vertices.shape[-2]:
        raise ValueError(
            f"J_regressor_h36m has shape {tuple(reg.shape)}; expected (17, {vertices.shape[-2]}) for these vertices"
        )
    return torch.einsum("jv,bvc->bjc", reg, vertices.to(torch.float64))


def h36m_p2_errors(
    pred_vertices: torch.Tensor,
    gt_S: torch.Tensor,
    j_regressor_h36m: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """H3.6M Protocol 2 per frame: (MPJPE (B,), P-MPJPE (B,)) in mm, as SPIN:eval.py.

    pred_vertices (B, V, 3) metres; gt_S (B, 24, 4) metres (SPIN-24, root-centred, col 3 = validity);
    j_regressor_h36m (17, V). Prediction: 17 regressed joints, H36M_TO_J14, minus joint 0 (pelvis).
    GT: S[:, J24_TO_J14, :3], not re-centred.
    """
    if gt_S.ndim != 3 or gt_S.shape[1:] != (24, 4):
        raise ValueError(f"gt_S must be (B, 24, 4) (SPIN-24 with a validity column), got {tuple(gt_S.shape)}")
    if pred_vertices.shape[0] != gt_S.shape[0]:
        raise ValueError(f"batch sizes differ: {pred_vertices.shape[0]} predictions, {gt_S.shape[0]} GT frames")
    joints17 = regress_h36m_joints(pred_vertices, j_regressor_h36m)  # (B, 17, 3)
    pelvis = joints17[:, :1]
    pred14 = joints17[:, list(H36M_TO_J14)] - pelvis  # (B, 14, 3)
    gt14 = gt_S.to(torch.float64)[:, list(J24_TO_J14), :3]  # (B, 14, 3)
    return mpjpe(pred14, gt14) * 1000.0, p_mpjpe(pred14, gt14) * 1000.0
