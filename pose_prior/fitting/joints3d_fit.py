"""Inverse kinematics through a prior: recover a body pose from (some of) its 3D joints, no camera.

The IK benchmarks of HuProSO3 (Dünkel et al., CVPR 2024; odunkel/HuProSO `explore/evaluate.ipynb`,
`src/hp/analysis/eval_ik_tools.py`): AMASS test poses, their joints 0-21 as the observation, the pose
recovered from all of them, from three occlusions, or from the 5 leaf joints only. Joint sets (SMPL indices,
HuProSO3's AMASS joint names in brackets; their "foot" is SMPL's ankle and their "hand" SMPL's wrist):

- full: joints 0-21;
- occ_left_leg: without 1 left_hip, 4 left_knee, 7 left_ankle [LeftUpLeg, LeftLeg, LeftFoot];
- occ_left_arm: without 16 left_shoulder, 18 left_elbow, 20 left_wrist [LeftArm, LeftElbow, LeftHand];
- occ_right_shoulder: without 14 right_collar, 17 right_shoulder [RightShoulder, RightArm];
- leaves: only 15 head, 20 left_wrist, 21 right_wrist, 7 left_ankle, 8 right_ankle
  [Head, LeftHand, RightHand, LeftFoot, RightFoot].

Frame: HuProSO3 computes the joints by forward kinematics of the body rotations alone (no global
orientation, root fixed), and the prepared AMASS arrays hold the 63-d body pose only; so by default the fit
optimises the latent alone, with zero global orientation and translation, in that root-relative frame.
`fit_root=True` also optimises global orientation and translation (both starting at zero), for targets
carrying a rigid transform.

Objective per sample: sum over observed joints of the squared error in millimetres (mm keeps the data term
and the priors' penalties, e.g. the GMM's, at the scales of the 2D fit) plus `prior.fit_penalty`, minimised
by `batched_lbfgs` (per-sample state: a sample's result does not depend on its batch-mates), the latent
projected onto its support after every step when the prior is constrained (S, U). Several starts
(`restarts`): the lowest final objective wins per sample. `start_pool` > 0: each row starts from the best,
by the objective, of its own start and that many seeded prior samples, restart r from the r-th best
(`pose_prior.fitting.starts`).

Metrics (HuProSO3's): MPJPE over joints 0-21, observed and occluded alike (mm); MGEO, the mean over the 21
body joints of the geodesic angle between the recovered and ground-truth rotations (rad). HuProSO3
averages MGEO over 19 joints (without the toes, 10 and 11): reported too as `mgeo19`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import torch
from torch import nn

from pose_prior.fitting.keypoint_fit import FitSettings, _PriorInFit
from pose_prior.fitting.lbfgs import batched_lbfgs, evaluation_cap
from pose_prior.fitting.starts import draw_pool, select_starts
from pose_prior.priors.base import Prior
from pose_prior.priors.none import NoPrior
from pose_prior.rotations import body_pose_to_matrices, matrix_to_axis_angle

NUM_IK_JOINTS = 22  # joints 0-21
MM_PER_M = 1000.0
IK_TASKS: dict[str, tuple[int, ...]] = {  # observed joints of each task
    "full": tuple(range(NUM_IK_JOINTS)),
    "occ_left_leg": tuple(j for j in range(NUM_IK_JOINTS) if j not in (1, 4, 7)),
    "occ_left_arm": tuple(j for j in range(NUM_IK_JOINTS) if j not in (16, 18, 20)),
    "occ_right_shoulder": tuple(j for j in range(NUM_IK_JOINTS) if j not in (14, 17)),
    "leaves": (7, 8, 15, 20, 21),
}
HUPROSO3_GEO_JOINTS = tuple(j for j in range(21) if j not in (9, 10))  # body joints 1-21 without toes 10, 11


def task_mask(task: str, num_joints: int = NUM_IK_JOINTS) -> torch.Tensor:
    """(num_joints,) bool: the joints observed in `task` (one of IK_TASKS)."""
    if task not in IK_TASKS:
        raise ValueError(f"unknown IK task {task!r}; valid: {sorted(IK_TASKS)}")
    mask = torch.zeros(num_joints, dtype=torch.bool)
    mask[list(IK_TASKS[task])] = True
    return mask


@dataclass
class Joints3DFitSettings:
    """Settings of `fit_joints3d`."""

    iters: int = 300  # L-BFGS iterations
    history_size: int = 10
    ftol: float = 1e-12
    gtol: float = 1e-8
    fit_root: bool = False  # also optimise global orientation + translation (HuProSO3: root-relative, off)
    restarts: int = 1  # latent starts per sample (`prior.fit_starts`), best kept per sample
    candidates: int = 256  # seeded candidates the S starts are picked from
    # per row, start from the lowest-objective latent among the row's own start and this many seeded prior
    # samples (with zero orientation and translation); 0 = off
    start_pool: int = 0
    seed: int = 0
    gmm_weight: float = 4.78  # GMM prior: gmm_weight^2 x max-mixture penalty (as the 2D fit)
    latent_l2_weight: float = 0.0  # latent priors: optional latent_l2_weight^2 ||z||^2 (0: none)
    # window stopping rule (per sample): stop when the objective (mm^2) fell by no more than
    # stop_atol + stop_rtol * objective over the last stop_window iterations (0 = off: iters, ftol, gtol)
    stop_window: int = 0
    stop_rtol: float = 1e-4
    stop_atol: float = 0.01
    # as FitSettings.max_eval_factor; 0 (no cap) keeps the IK protocol's fixed iteration count
    max_eval_factor: float = 0.0
    reevaluate_projected: bool = False  # as FitSettings.reevaluate_projected

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Joints3DFitSettings:
        values = dict(values or {})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown IK setting(s) {unknown}; valid: {sorted(f.name for f in fields(cls))}")
        return cls(**values)

    def penalty_settings(self) -> FitSettings:
        """The `FitSettings` a prior's `fit_penalty` reads its weights from."""
        return FitSettings(gmm_weight=self.gmm_weight, latent_l2_weight=self.latent_l2_weight, seed=self.seed,
                           candidates=self.candidates, restarts=self.restarts)


@dataclass
class Joints3DFitResult:
    body_pose: torch.Tensor  # (B, 63) axis-angle
    latent: torch.Tensor  # (B, D)
    global_orient: torch.Tensor  # (B, 3)
    transl: torch.Tensor  # (B, 3)
    joints: torch.Tensor  # (B, J, 3) fitted joints
    loss: torch.Tensor  # (B,) final objective
    iterations: torch.Tensor  # (B,)


def _broadcast_mask(mask: Optional[torch.Tensor], B: int, J: int, device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(B, J, dtype=torch.bool, device=device)
    m = torch.as_tensor(mask, device=device).bool()
    if m.shape == (J,):
        return m[None].expand(B, J)
    if m.shape != (B, J):
        raise ValueError(f"mask must be ({J},) or ({B}, {J}), got {tuple(m.shape)}")
    return m


POOL_CHUNK_ROWS = 1024  # full body-model forwards per scoring call of the start pool (memory: vertices)


def _pool_starts(param: _PriorInFit, body_model: nn.Module, z0: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor, pen_settings: FitSettings, s: Joints3DFitSettings,
                 rank: torch.Tensor) -> torch.Tensor:
    """Per row, the rank-th lowest-objective start (rank (N,): the row's restart index) among z0's (N, D) and
    `s.start_pool` seeded prior samples, each scored by the fit's objective at zero orientation and
    translation (where `fit_root` starts)."""
    pool = draw_pool(param.prior, s.start_pool, s.seed, z0)  # (M, D)
    J = target.shape[1]
    with torch.no_grad():
        rot_pool, rot_own = param.matrices(pool), param.matrices(z0)  # decoded once: (M | N, 21, 3, 3)

    def score(cand: Optional[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        rot, z = (rot_own[rows], z0[rows]) if cand is None else (rot_pool[cand], pool[cand])
        err = ((body_model(rot).joints[:, :J] - target[rows]) * MM_PER_M).square().sum(-1)  # (n, J) mm^2
        loss = (err * weight[rows]).sum(-1)
        pen = param.penalty(z, pen_settings)
        return loss if pen is None else loss + pen

    return select_starts(z0, pool, score, rank, chunk_rows=POOL_CHUNK_ROWS)


def fit_joints3d(prior: Optional[Prior], body_model: nn.Module, joints: torch.Tensor,
                 mask: Optional[torch.Tensor] = None, settings: Joints3DFitSettings | dict | None = None,
                 init_latent: Optional[torch.Tensor] = None) -> Joints3DFitResult:
    """Fit the prior's latent (+ orientation and translation with `fit_root`) to joints (B, J, 3) in metres,
    J <= the body model's joints (targets are joints 0..J-1), observing the joints where `mask` ((J,) or
    (B, J) bool) is True. prior=None fits the raw 63-d pose (`NoPrior`). `init_latent` (B, D) replaces
    the first start."""
    s = settings if isinstance(settings, Joints3DFitSettings) else Joints3DFitSettings.from_dict(settings)
    dtype, device = body_model.dtype, body_model.device
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise ValueError(f"joints must be (B, J, 3), got {tuple(joints.shape)}")
    B, J = joints.shape[:2]
    target = joints.to(device=device, dtype=dtype)
    weight = _broadcast_mask(mask, B, J, device).to(dtype)  # (B, J) 1 = observed
    param = _PriorInFit(NoPrior().to(device=device, dtype=dtype) if prior is None else prior, dtype, device)
    pen_settings = s.penalty_settings()
    D = param.dim
    starts = param.starts(pen_settings)[:, None].expand(-1, B, -1).clone()  # (R, B, D)
    if init_latent is not None:
        if init_latent.shape != (B, D):
            raise ValueError(f"init_latent must be ({B}, {D}), got {tuple(init_latent.shape)}")
        starts[0] = init_latent.to(starts)
    R = starts.shape[0]
    z0 = param.project(starts.reshape(R * B, D))  # rows (start r, sample b) = r * B + b
    target_r, weight_r = target.repeat(R, 1, 1), weight.repeat(R, 1)
    if s.start_pool > 0 and prior is not None:
        rank = torch.arange(R * B, device=device) // B  # restart r: the r-th best candidate
        z0 = _pool_starts(param, body_model, z0, target_r, weight_r, pen_settings, s, rank)
    x0 = torch.cat([z0, torch.zeros(R * B, 6, dtype=dtype, device=device)], -1) if s.fit_root else z0

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([param.project(x[:, :D]), x[:, D:]], -1)

    def posed(x: torch.Tensor) -> torch.Tensor:
        orient, transl = (x[:, D:D + 3], x[:, D + 3:]) if s.fit_root else (None, None)
        return body_model(param.matrices(x[:, :D]), global_orient=orient, transl=transl).joints[:, :J]

    def objective(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        err = ((posed(x) - target_r[rows]) * MM_PER_M).square().sum(-1)  # (N, J) mm^2
        loss = (err * weight_r[rows]).sum(-1)
        pen = param.penalty(x[:, :D], pen_settings)
        return loss if pen is None else loss + pen

    res = batched_lbfgs(objective, x0, project=project if param.prior.constrained else None, max_iter=s.iters,
                        max_eval=evaluation_cap(s.iters, s.max_eval_factor), history_size=s.history_size,
                        ftol=s.ftol, gtol=s.gtol, subset_rows=True, reevaluate_projected=s.reevaluate_projected,
                        window=s.stop_window, window_rtol=s.stop_rtol, window_atol=s.stop_atol)
    x = project(res.x.detach())
    with torch.no_grad():
        loss = objective(x, torch.arange(x.shape[0], device=device))
        best = loss.reshape(R, B).argmin(0)  # (B,)
        rows = best * B + torch.arange(B, device=device)
        xb = x[rows]
        zeros = torch.zeros(B, 3, dtype=dtype, device=device)
        return Joints3DFitResult(
            body_pose=param.body_pose(xb[:, :D]), latent=xb[:, :D].clone(),
            global_orient=xb[:, D:D + 3].clone() if s.fit_root else zeros,
            transl=xb[:, D + 3:].clone() if s.fit_root else zeros.clone(),
            joints=posed(xb), loss=loss[rows], iterations=res.iterations[rows])


# --- metrics -------------------------------------------------------------------------------------------
def mpjpe_mm(pred: torch.Tensor, gt: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, J, 3), (B, J, 3) metres -> (B,) mean joint error in mm over the joints where mask ((J,) or (B, J))
    is True (all joints when None); NaN for a sample with no such joint."""
    err = (pred - gt).norm(dim=-1) * MM_PER_M  # (B, J)
    if mask is None:
        return err.mean(-1)
    m = _broadcast_mask(mask, err.shape[0], err.shape[1], err.device).to(err.dtype)
    return (err * m).sum(-1) / m.sum(-1)


def geodesic_angles(pose: torch.Tensor, gt_pose: torch.Tensor) -> torch.Tensor:
    """(B, 63), (B, 63) axis-angle -> (B, 21) angle (rad) of R_gt^T R per body joint (exact near 0)."""
    rel = body_pose_to_matrices(gt_pose).transpose(-1, -2) @ body_pose_to_matrices(pose.to(gt_pose))
    return matrix_to_axis_angle(rel).norm(dim=-1)


def ik_metrics(result: Joints3DFitResult, gt_joints: torch.Tensor, gt_pose: torch.Tensor,
               observed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample (B,) metrics of a fit against the ground truth: mpjpe_mm (joints 0..J-1, HuProSO3),
    mpjpe_observed_mm, mpjpe_occluded_mm (NaN when nothing is occluded), mgeo (21 joints, rad), mgeo19."""
    gt_joints = gt_joints.to(result.joints)
    obs = _broadcast_mask(observed, gt_joints.shape[0], gt_joints.shape[1], gt_joints.device)
    angles = geodesic_angles(result.body_pose, gt_pose.to(result.body_pose))
    return {
        "mpjpe_mm": mpjpe_mm(result.joints, gt_joints),
        "mpjpe_observed_mm": mpjpe_mm(result.joints, gt_joints, obs),
        "mpjpe_occluded_mm": mpjpe_mm(result.joints, gt_joints, ~obs),
        "mgeo": angles.mean(-1),
        "mgeo19": angles[:, list(HUPROSO3_GEO_JOINTS)].mean(-1),
    }
