"""Fitting a body to 2D keypoints through a pose prior (paper Sec. 3.3 / 4.3, Eq. 4), SMPLify style.

Per sample, batched (every sample is an independent problem: `batched_lbfgs` keeps per-sample state):

1. Translation initialisation (SMPLify "similar triangles"): tz = f * mean 3D torso edge / mean 2D torso
   edge, on the body of the initial pose; tx, ty put the torso centroid on the keypoints' torso centroid.
2. Camera stage: global orientation + translation on the 4 torso keypoints (hips, shoulders), squared
   pixel error + depth_weight^2 (tz - tz_init)^2; run from the initial orientation (180 deg about x: a
   y-up body upright in a y-down camera, facing it) AND from its 180-degree flip about the vertical axis.
3. Body stage: latent (or raw pose) + orientation + translation on all keypoints with the
   confidence-weighted Geman-McClure reprojection loss sum_j c_j^2 sum_xy rho(r) (sigma 100 px).
   Prior-specific terms only where a prior needs one: the GMM prior adds gmm_weight^2 * SMPLify's
   max-mixture penalty; latent priors (GAN-S/U/N, VPoser) add nothing (the paper's point) unless
   `latent_l2_weight` > 0; "none" (prior=None) optimises the raw 63-d pose with no prior term at all.
   For S and U the latent is projected onto its support after every step (`project` of batched_lbfgs).
4. Per sample, the lowest body-stage loss over {orientation, flipped orientation} x {latent starts} wins.

Stopping (both stages, per sample): the iteration caps, an evaluation cap of 1.25 x the iteration cap
checked after each iteration (torch.optim.LBFGS's default `max_eval`, which the SMPLify-style reference fits
inherit; `max_eval_factor`), and a window rule that stops a sample when its loss fell by no more than
stop_atol + stop_rtol * loss over the last stop_window iterations (the default 1e-3 over 10 iterations;
`stop_window=0, max_eval_factor=0` restores fixed counts). Only the rows still running are evaluated, so
converged samples cost nothing; the gradient at a projected latent comes from the chain rule, not a second
evaluation (`reevaluate_projected=True`: the earlier behaviour).

Shape priors (`prior.yields == "body_pose+betas"`: GAN-theta-beta, a pose prior + GAN-beta pair): the fit
optimises the prior's whole latent (the joint latent, or the pair's concatenation), projected onto its
sphere(s) after every step, and poses the keypoint body with `decode_betas(z)` as well as the pose; the
result's `betas` are the prior's (zeros for pose-only priors, which fit the neutral shape).

Initial latents: N and U: zeros (the mode / box centre); S: the most neutral of `candidates` seeded
samples (smallest decoded pose norm), a fixed deterministic unit vector; restarts > 1 add the next most
neutral candidates. GMM: SMPLify's mixture mean pose. None: the zero pose. With `start_pool` > 0 the body
stage of each row starts instead from the best, by its loss at the camera stage's result, of that start and
`start_pool` seeded prior samples (`pool_starts`); restart r from the r-th best. With `prune_after` = k, only
each sample's lowest-loss row (of restarts x orientations) goes on after k body iterations, so several starts
cost little more than one.

No Lightning here: `lightning_modules/keypoint_fitting.py` runs this over a dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import torch
from torch import nn

from pose_prior.body_model.keypoint_body import KeypointBody
from pose_prior.body_model.keypoints import KeypointMap, keypoint_map_for_body_model
from pose_prior.fitting.camera import GMOF_SIGMA, gmof, perspective_project
from pose_prior.fitting.lbfgs import batched_lbfgs, evaluation_cap
from pose_prior.fitting.starts import draw_pool, select_starts
from pose_prior.priors.base import Prior
from pose_prior.priors.none import NoPrior
from pose_prior.rotations import axis_angle_to_matrix

# Keypoints SPIN's SMPLify ignores in the body stage (hip definitions differ between datasets and SMPL).
SPIN_IGNORED_KEYPOINTS = ("OP Neck", "OP RHip", "OP LHip", "Right Hip", "Left Hip", "Neck", "RHip", "LHip")
# Torso keypoints of the camera stage, per layout name set: (RHip, LHip, RShoulder, LShoulder)
TORSO_NAMES = {
    "openpose": ("RHip", "LHip", "RShoulder", "LShoulder"),
    "spin_op": ("OP RHip", "OP LHip", "OP RShoulder", "OP LShoulder"),
    "spin_gt": ("Right Hip", "Left Hip", "Right Shoulder", "Left Shoulder"),
    "coco": ("right_hip", "left_hip", "right_shoulder", "left_shoulder"),
}

Monitor = Callable[[str, torch.Tensor], None]  # (stage, latent rows at an evaluation) -> None


@dataclass
class FitSettings:
    """Settings of `fit_keypoints` (defaults: SMPLify / SPIN values where they exist)."""

    focal: float = 5000.0  # px
    camera_iters: int = 30  # L-BFGS iterations of the camera stage
    body_iters: int = 100  # at most this many L-BFGS iterations in the body stage
    history_size: int = 10
    ftol: float = 1e-9
    gtol: float = 1e-7
    # Stopping rule (both stages, per sample): stop when the loss fell by no more than
    # stop_atol + stop_rtol * loss over the last stop_window iterations (0 = off: the iteration caps,
    # ftol and gtol only, which in float32 rarely trigger before the cap). Units: the body-stage loss
    # is a sum over keypoints of confidence^2 x Geman-McClure(pixel residual) (~ px^2 for small
    # residuals), so stop_atol = 0.1 is a tenth of a squared pixel over the whole body.
    stop_window: int = 10
    stop_rtol: float = 1e-3
    stop_atol: float = 0.1
    # per sample and stage, at most int(max_eval_factor x the stage's iterations) objective evaluations,
    # checked after each iteration (torch.optim.LBFGS's default max_eval, 1.25 x max_iter; 0 = no cap)
    max_eval_factor: float = 1.25
    sigma: float = GMOF_SIGMA  # Geman-McClure scale (px)
    depth_weight: float = 100.0  # camera stage: depth_weight^2 (tz - tz_init)^2
    gmm_weight: float = 4.78  # GMM prior: gmm_weight^2 * max-mixture penalty (SPIN's final weight)
    latent_l2_weight: float = 0.0  # optional latent_l2_weight^2 * ||z||^2 for latent priors (0 = paper)
    ignore_keypoints: Sequence[str] = SPIN_IGNORED_KEYPOINTS  # zero confidence in the body stage
    flip: bool = True  # also fit from the 180-degree flipped orientation; keep the lower loss
    restarts: int = 1  # latent starts per sample (best kept per sample)
    candidates: int = 256  # seeded latent candidates the S starts are picked from
    # per fit row, the body stage starts from the lowest-loss latent among the row's own start and this many
    # seeded prior samples, scored at the camera stage's orientation and translation (0 = off)
    start_pool: int = 0
    # body stage: after this many iterations only each sample's lowest-loss row (of its restarts x
    # orientations) goes on to body_iters, the others stop there (0 = every row runs to the end)
    prune_after: int = 0
    seed: int = 0
    # the gradient at a projected latent from the chain rule (False) or a fresh evaluation there (True,
    # earlier versions: one more objective evaluation per iteration; same optimum, other rounding)
    reevaluate_projected: bool = False

    def stopping(self, max_iter: int) -> dict[str, Any]:
        """A stage's iteration and evaluation caps and the window stopping rule as `batched_lbfgs` keywords."""
        return {"max_iter": int(max_iter), "max_eval": evaluation_cap(max_iter, self.max_eval_factor),
                "window": int(self.stop_window), "window_rtol": float(self.stop_rtol),
                "window_atol": float(self.stop_atol)}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> FitSettings:
        """From a plain dict (e.g. a config section); unknown keys are an error naming the valid ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fitting setting(s) {unknown}; valid: {sorted(known)}")
        if "ignore_keypoints" in values:
            values["ignore_keypoints"] = tuple(values["ignore_keypoints"])
        return cls(**values)


@dataclass
class FitResult:
    """Per-sample results of `fit_keypoints` (all tensors have the batch as first dimension)."""

    body_pose: torch.Tensor  # (B, 63) axis-angle
    latent: Optional[torch.Tensor]  # (B, d), or None for prior=None
    global_orient: torch.Tensor  # (B, 3) axis-angle
    transl: torch.Tensor  # (B, 3) camera translation (metres)
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # each (B,)
    iterations: Optional[torch.Tensor] = None  # (B,) L-BFGS iterations (camera + body stage)
    flipped: Optional[torch.Tensor] = None  # (B,) bool: the flipped orientation won
    start: Optional[torch.Tensor] = None  # (B,) long: index of the winning latent start
    betas: Optional[torch.Tensor] = None  # (B, num_betas): the prior's for shape priors, zeros otherwise
    evaluations: Optional[torch.Tensor] = None  # (B,) objective evaluations spent on the sample (all its rows, both stages)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------


def _rot_x_pi(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n, 3) axis-angle of 180 degrees about x: a y-up body seen upright by a y-down camera."""
    aa = torch.zeros(n, 3, dtype=dtype, device=device)
    aa[:, 0] = math.pi
    return aa


def flip_orientation(global_orient: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle -> the orientation turned 180 degrees about the camera's vertical (y) axis."""
    from pose_prior.rotations import matrix_to_axis_angle

    ry = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=global_orient.dtype, device=global_orient.device))
    return matrix_to_axis_angle(ry @ axis_angle_to_matrix(global_orient))


def _torso_indices(layout_names: Sequence[str]) -> list[list[int]]:
    """Candidate torso index sets (RHip, LHip, RShoulder, LShoulder) present in the layout, in priority order."""
    out = []
    for names in TORSO_NAMES.values():
        if all(n in layout_names for n in names):
            out.append([layout_names.index(n) for n in names])
    if not out:
        raise ValueError(f"keypoint layout has no hips and shoulders to initialise the camera from: {list(layout_names)}")
    return out


def _torso_mask(conf: torch.Tensor, candidates: list[list[int]], available: torch.Tensor) -> torch.Tensor:
    """(B, K) 0/1 mask of the 4 torso keypoints used per sample (first candidate set with all 4 visible)."""
    B, K = conf.shape
    mask = torch.zeros(B, K, dtype=conf.dtype, device=conf.device)
    chosen = torch.zeros(B, dtype=torch.bool, device=conf.device)
    for idx in candidates:
        idx_t = torch.tensor(idx, device=conf.device)
        ok = ((conf[:, idx_t] > 0) & available[idx_t][None]).all(-1) & ~chosen
        m = torch.zeros(B, K, dtype=conf.dtype, device=conf.device)
        m[:, idx_t] = 1.0
        mask = torch.where(ok[:, None], m, mask)
        chosen |= ok
    # no complete set: use whichever torso keypoints of the first set are visible
    idx_t = torch.tensor(candidates[0], device=conf.device)
    m = torch.zeros(B, K, dtype=conf.dtype, device=conf.device)
    m[:, idx_t] = (conf[:, idx_t] > 0).to(conf.dtype) * available[idx_t].to(conf.dtype)
    return torch.where(chosen[:, None], mask, m)


def init_translation(
    joints3d: torch.Tensor, keypoints: torch.Tensor, torso: torch.Tensor, focal: float, center: torch.Tensor
) -> torch.Tensor:
    """SMPLify similar triangles for tz from torso edges (RShoulder-RHip, LShoulder-LHip) + torso centroid for tx, ty.

    joints3d (B, K, 3) model keypoints (camera frame, no translation), keypoints (B, K, 3),
    torso (B, K) mask of the 4 torso keypoints in the order of `_torso_indices` -> (B, 3).
    """
    B = joints3d.shape[0]
    w = torso  # (B, K)
    n = w.sum(-1).clamp(min=1)
    # edge lengths: pair each visible torso point with the mean of the others -> a robust scale ratio
    c3 = (joints3d * w[..., None]).sum(1) / n[:, None]  # (B, 3)
    c2 = (keypoints[..., :2] * w[..., None]).sum(1) / n[:, None]  # (B, 2)
    spread3 = (((joints3d[..., :2] - c3[:, None, :2]) ** 2).sum(-1) * w).sum(-1).sqrt()
    spread2 = (((keypoints[..., :2] - c2[:, None]) ** 2).sum(-1) * w).sum(-1).sqrt()
    default = 2 * focal / (224 * 0.9)
    tz = torch.where(spread2 > 1e-6, focal * spread3 / spread2.clamp(min=1e-6), torch.full_like(spread2, default))
    tz = tz - c3[:, 2]  # the torso centroid sits at depth tz + c3_z
    depth = tz + c3[:, 2]
    txy = (c2 - center) * depth[:, None] / focal - c3[:, :2]
    out = torch.cat([txy, tz[:, None]], -1)
    return torch.where((w.sum(-1) > 0)[:, None], out, torch.tensor([0.0, 0.0, default]).to(out).expand(B, 3))


def reprojection_loss(
    projected: torch.Tensor, keypoints: torch.Tensor, conf: torch.Tensor, sigma: float
) -> torch.Tensor:
    """sum_j c_j^2 sum_xy GMoF(projected - target) -> (B,)."""
    r = projected - keypoints[..., :2]
    return (conf**2 * gmof(r, sigma).sum(-1)).sum(-1)


TXY_UNIT_PX = 100.0  # a unit of the (u, v) camera variables moves the projected root by this many pixels
LOG_DEPTH_SCALE = 10.0  # a unit of w changes the depth by a factor exp(1/10) (~10 % of the body's size)


def camera_to_vars(transl: torch.Tensor, focal: float) -> torch.Tensor:
    """Translation (B, 3) -> optimisation variables (u, v, w): root offset in units of 100 px, scaled log depth.

    Keeps the variables' effects on the projections of similar size (L-BFGS starts from an identity Hessian).
    """
    tz = transl[:, 2:3]
    return torch.cat([transl[:, :2] * focal / (tz * TXY_UNIT_PX), torch.log(tz) * LOG_DEPTH_SCALE], -1)


def vars_to_camera(uvw: torch.Tensor, focal: float) -> torch.Tensor:
    """Inverse of `camera_to_vars`: (B, 3) -> translation (B, 3)."""
    tz = torch.exp(uvw[:, 2:3] / LOG_DEPTH_SCALE)
    return torch.cat([uvw[:, :2] * TXY_UNIT_PX * tz / focal, tz], -1)


class _PriorInFit:
    """The prior as the fit sees it: its latent, decoded and penalised in the prior's dtype, the rest
    of the fit in the body model's (e.g. a float32 prior inside a float64 fit). A prior that yields
    "body_pose+betas" (GAN-theta-beta, a pose + GAN-beta pair) also gives the body's betas."""

    def __init__(self, prior: Prior, dtype: torch.dtype, device: torch.device) -> None:
        self.prior, self.dtype, self.device, self.dim = prior, dtype, device, int(prior.latent_dim)
        self.shaped = getattr(prior, "yields", "body_pose") == "body_pose+betas"

    def matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(R, dim) -> (R, 21, 3, 3)."""
        return self.prior.decode_matrices(z.to(self.prior.dtype)).to(self.dtype)

    def betas(self, z: torch.Tensor) -> Optional[torch.Tensor]:
        """(R, dim) -> (R, k) betas of a shape prior; None (neutral shape) for a pose prior."""
        if not self.shaped:
            return None
        return self.prior.decode_betas(z.to(self.prior.dtype)).to(self.dtype)

    def matrices_and_betas(self, z: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(R, dim) -> (R, 21, 3, 3), (R, k) or None: a shape prior's two parts from one decode."""
        if not self.shaped:
            return self.matrices(z), None
        rot, betas = self.prior.decode_matrices_and_betas(z.to(self.prior.dtype))
        return rot.to(self.dtype), betas.to(self.dtype)

    def body_pose(self, z: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(z.to(self.prior.dtype)).to(self.dtype)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.prior.project(z) if self.prior.constrained else z

    def penalty(self, z: torch.Tensor, settings: FitSettings) -> Optional[torch.Tensor]:
        return self.prior.fit_penalty(z, settings)

    def starts(self, settings: FitSettings) -> torch.Tensor:
        """(R, dim) initial values, identical for every sample."""
        R = max(1, int(settings.restarts))
        starts = self.prior.fit_starts(R, settings.candidates, settings.seed)
        return starts.to(dtype=self.dtype, device=self.device)


def pool_starts(
    param: _PriorInFit,
    keypoint_body: KeypointBody,
    z0: torch.Tensor,
    x_cam: torch.Tensor,
    keypoints: torch.Tensor,
    conf: torch.Tensor,
    center: torch.Tensor,
    settings: FitSettings,
    rank: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Per fit row, the lowest-loss start among the row's own start and `settings.start_pool` seeded prior
    samples, each scored by the body-stage objective at the row's camera-stage orientation and translation.

    z0 (N, D) the rows' own starts, x_cam (N, 6) [axis-angle orientation, camera variables], keypoints
    (N, K, 3), conf (N, K) body-stage confidences, center (N, 2), rank (N,) which candidate in the order of
    their losses a row takes (a row's restart index; None: the best) -> (N, D).
    """
    pool = draw_pool(param.prior, settings.start_pool, settings.seed, z0)  # (M, D)
    with torch.no_grad():
        # each candidate's kinematic chain once (decoded, posed with the identity root), then per row only
        # the row's root rotation and translation
        pool_pts, pool_j0 = keypoint_body.rooted(*param.matrices_and_betas(pool))  # (M, K, 3), (1|M, 3)
        own_pts, own_j0 = keypoint_body.rooted(*param.matrices_and_betas(z0))  # (N, K, 3), (1|N, 3)
        root = axis_angle_to_matrix(x_cam[:, :3])  # (N, 3, 3)
        t = vars_to_camera(x_cam[:, 3:], settings.focal)  # (N, 3)

    def score(cand: Optional[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        pts, j0, idx, z = (own_pts, own_j0, rows, z0) if cand is None else (pool_pts, pool_j0, cand, pool)
        pts = keypoint_body.place(pts[idx], j0[idx if j0.shape[0] > 1 else [0]], root[rows], t[rows])
        z = z[idx]
        proj = perspective_project(pts, torch.zeros_like(t[rows]), settings.focal, center[rows])
        loss = reprojection_loss(proj, keypoints[rows], conf[rows], settings.sigma)
        pen = param.penalty(z, settings)
        return loss if pen is None else loss + pen

    return select_starts(z0, pool, score, rank)


# ------------------------------------------------------------------------------------------------
# The fit
# ------------------------------------------------------------------------------------------------


def fit_keypoints(
    prior: Optional[Prior],
    body_model: nn.Module,
    keypoints: torch.Tensor,
    layout: str | KeypointMap = "spin24",
    center: torch.Tensor | Sequence[float] = (112.0, 112.0),
    settings: FitSettings | dict | None = None,
    monitor: Optional[Monitor] = None,
    keypoint_body: Optional[KeypointBody] = None,
    init_latent: Optional[torch.Tensor] = None,
    init_global_orient: Optional[torch.Tensor] = None,
    init_transl: Optional[torch.Tensor] = None,
) -> FitResult:
    """Fit pose (through `prior`, or raw with prior=None), global orientation and camera translation to
    keypoints (B, K, 3) [x, y, confidence] in pixels of a camera with focal `settings.focal` and
    principal point `center` ((2,) or (B, 2)). `layout` names the keypoint order (spin24, spin49,
    openpose25, coco17) or gives a KeypointMap. `monitor(stage, latent)` is called at every objective
    evaluation with the (projected) latent rows being evaluated. Samples are independent of each other.
    Optional per-sample starts: `init_latent` (B, d) (or the raw (B, 63) pose for prior=None) replaces
    the first latent start; `init_global_orient` (B, 3) the SMPLify orientation; `init_transl` (B, 3) the
    similar-triangles translation (and the depth anchor of the camera stage).
    """
    s = settings if isinstance(settings, FitSettings) else FitSettings.from_dict(settings)
    dtype = body_model.dtype
    device = body_model.device if hasattr(body_model, "device") else keypoints.device
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be (B, K, 3) [x, y, confidence], got {tuple(keypoints.shape)}")
    if keypoint_body is None:
        kmap = layout if isinstance(layout, KeypointMap) else keypoint_map_for_body_model(body_model, layout)
        keypoint_body = KeypointBody(body_model, kmap).to(device)
    K = keypoint_body.num_keypoints
    if keypoints.shape[1] != K:
        raise ValueError(
            f"keypoints have {keypoints.shape[1]} points but layout {keypoint_body.layout.name} has {K}"
        )
    kp = keypoints.to(device=device, dtype=dtype)
    B = kp.shape[0]
    ctr = torch.as_tensor(center, dtype=dtype, device=device)
    ctr = ctr.expand(B, 2) if ctr.shape == (2,) else ctr
    if ctr.shape != (B, 2):
        raise ValueError(f"center must be (2,) or ({B}, 2), got {tuple(ctr.shape)}")
    names = list(keypoint_body.layout.joint_names)
    available = keypoint_body.available
    conf = kp[..., 2].clamp(min=0) * available[None].to(dtype)  # (B, K)
    ignore = [names.index(n) for n in s.ignore_keypoints if n in names]
    body_conf = conf.clone()
    if ignore:
        body_conf[:, ignore] = 0.0
    torso = _torso_mask(conf, _torso_indices(names), available)  # (B, K)

    param = _PriorInFit(NoPrior().to(device=device, dtype=dtype) if prior is None else prior, dtype, device)
    D = param.dim
    starts = param.starts(s)[:, None].expand(-1, B, -1).clone()  # (R, B, D)
    if init_latent is not None:
        if init_latent.shape != (B, D):
            raise ValueError(f"init_latent must be ({B}, {D}), got {tuple(init_latent.shape)}")
        starts[0] = init_latent.to(starts)
    starts = param.project(starts.reshape(-1, D)).reshape(-1, B, D)
    R = starts.shape[0]
    n_orient = 2 if s.flip else 1
    with torch.no_grad():
        rot0, betas0 = param.matrices_and_betas(starts[0])  # (B, 21, 3, 3), (B, k) or None

    # --- camera stage: rows (orientation o, sample b) = o * B + b ---
    orient0 = _rot_x_pi(B, dtype, device) if init_global_orient is None else init_global_orient.to(kp).reshape(B, 3)
    orients = torch.cat([orient0, flip_orientation(orient0)]) if n_orient == 2 else orient0  # (n_orient*B, 3)
    kp_o, torso_o, ctr_o = kp.repeat(n_orient, 1, 1), torso.repeat(n_orient, 1), ctr.repeat(n_orient, 1)
    rot0_o = rot0.repeat(n_orient, 1, 1, 1)
    betas0_o = None if betas0 is None else betas0.repeat(n_orient, 1)
    with torch.no_grad():
        if init_transl is None:
            body0 = keypoint_body(axis_angle_to_matrix(orients), rot0_o,
                                  torch.zeros(n_orient * B, 3, dtype=dtype, device=device), betas0_o)
            transl0 = init_translation(body0, kp_o, torso_o, s.focal, ctr_o)  # (n_orient*B, 3)
        else:
            transl0 = init_transl.to(kp).reshape(B, 3).repeat(n_orient, 1)
    tz_init = transl0[:, 2].clone()

    start_o = starts[0].repeat(n_orient, 1)

    def camera_loss(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if monitor is not None:
            monitor("camera", start_o[rows])
        t = vars_to_camera(x[:, 3:], s.focal)
        pts = keypoint_body(axis_angle_to_matrix(x[:, :3]), rot0_o[rows], t,
                            None if betas0_o is None else betas0_o[rows])
        proj = perspective_project(pts, torch.zeros_like(t), s.focal, ctr_o[rows])
        err = ((proj - kp_o[rows, :, :2]) ** 2).sum(-1)  # (rows, K)
        return (err * torso_o[rows]).sum(-1) + s.depth_weight**2 * (t[:, 2] - tz_init[rows]) ** 2

    x_cam = torch.cat([orients, camera_to_vars(transl0, s.focal)], -1)
    if s.camera_iters > 0:
        cam = batched_lbfgs(camera_loss, x_cam, history_size=s.history_size, ftol=s.ftol, gtol=s.gtol,
                            subset_rows=True, **s.stopping(s.camera_iters))
        x_cam, cam_iters, cam_loss, cam_evals = cam.x.detach(), cam.iterations, cam.f, cam.evaluations
    else:
        cam_iters = torch.zeros(n_orient * B, dtype=torch.long, device=device)
        cam_evals = torch.zeros_like(cam_iters)
        with torch.no_grad():
            cam_loss = camera_loss(x_cam, torch.arange(n_orient * B, device=device))

    # --- body stage: rows (start r, orientation o, sample b) = (r * n_orient + o) * B + b ---
    N = R * n_orient * B
    z0 = starts[:, None].expand(-1, n_orient, -1, -1).reshape(N, D)  # (N, D)
    if s.start_pool > 0 and prior is not None:
        rank = torch.arange(N, device=device) // (n_orient * B)  # restart r: the r-th best candidate
        z0 = pool_starts(param, keypoint_body, z0, x_cam.repeat(R, 1), kp.repeat(R * n_orient, 1, 1),
                         body_conf.repeat(R * n_orient, 1), ctr.repeat(R * n_orient, 1), s, rank)
    x_body = torch.cat([z0, x_cam.repeat(R, 1)], -1)  # (N, D + 6)
    kp_n, conf_n, ctr_n = kp.repeat(R * n_orient, 1, 1), body_conf.repeat(R * n_orient, 1), ctr.repeat(R * n_orient, 1)

    def project(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([param.project(x[:, :D]), x[:, D:]], -1)

    def body_terms(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        z = x[:, :D]
        t = vars_to_camera(x[:, D + 3:], s.focal)
        rot, betas = param.matrices_and_betas(z)  # one decode per evaluation, shape priors included
        pts = keypoint_body(axis_angle_to_matrix(x[:, D:D + 3]), rot, t, betas)
        proj = perspective_project(pts, torch.zeros_like(t), s.focal, ctr_n[rows])
        return reprojection_loss(proj, kp_n[rows], conf_n[rows], s.sigma), param.penalty(z, s)

    def body_loss(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if monitor is not None:
            monitor("body", x[:, :D].detach())
        data, pen = body_terms(x, rows)
        return data if pen is None else data + pen

    lbfgs = dict(project=project if param.prior.constrained else None, history_size=s.history_size, ftol=s.ftol,
                 gtol=s.gtol, subset_rows=True, reevaluate_projected=s.reevaluate_projected)
    prune = s.prune_after if 0 < s.prune_after < s.body_iters and R * n_orient > 1 else 0
    if s.body_iters > 0:
        res = batched_lbfgs(body_loss, x_body, **lbfgs, **s.stopping(prune or s.body_iters))
        x_fin, body_iters, body_evals = project(res.x.detach()), res.iterations, res.evaluations
    else:
        x_fin, body_iters = project(x_body), torch.zeros(N, dtype=torch.long, device=device)
        body_evals = torch.zeros_like(body_iters)
    if prune:  # per sample, only its lowest-loss row goes on (rows of other samples play no part)
        kept = res.f.reshape(R * n_orient, B).argmin(0) * B + torch.arange(B, device=device)  # (B,)

        def kept_loss(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return body_loss(x, kept[rows])

        more = batched_lbfgs(kept_loss, x_fin[kept], **lbfgs, **s.stopping(s.body_iters - prune))
        x_fin = x_fin.index_copy(0, kept, project(more.x.detach()))
        body_iters = body_iters.index_add(0, kept, more.iterations)
        body_evals = body_evals.index_add(0, kept, more.evaluations)
    with torch.no_grad():
        data, pen = body_terms(x_fin, torch.arange(N, device=device))
        total = data if pen is None else data + pen

    # --- per sample, the best row (after pruning, the one row that went on) ---
    best = kept // B if prune else total.reshape(R * n_orient, B).argmin(0)  # (B,)
    rows = best * B + torch.arange(B, device=device)
    x_best = x_fin[rows]
    z = x_best[:, :D]
    with torch.no_grad():
        body_pose = param.body_pose(z)
        betas = param.betas(z)
    if betas is None:
        betas = torch.zeros(B, keypoint_body.num_betas, dtype=dtype, device=device)
    losses = {"total": total[rows], "reprojection": data[rows],
              "camera": cam_loss.repeat(R)[rows]}
    if pen is not None:
        losses["prior"] = pen[rows]
    return FitResult(
        body_pose=body_pose.detach(),
        latent=None if prior is None else z.detach(),
        global_orient=x_best[:, D:D + 3].detach(),
        transl=vars_to_camera(x_best[:, D + 3:], s.focal).detach(),
        losses={k: v.detach() for k, v in losses.items()},
        iterations=(cam_iters.repeat(R) + body_iters)[rows],
        flipped=(best % n_orient == 1) if n_orient == 2 else torch.zeros(B, dtype=torch.bool, device=device),
        start=best // n_orient,
        betas=betas.detach(),
        evaluations=cam_evals.reshape(n_orient, B).sum(0) + body_evals.reshape(R * n_orient, B).sum(0),
    )


def fitted_vertices(body_model: nn.Module, result: FitResult, chunk: int = 256, orient: bool = True) -> torch.Tensor:
    """Vertices (B, V, 3) of the fitted bodies with their global orientation and betas (camera axes, no
    translation)."""
    out = []
    betas = fitted_betas(result)
    parts = [None] * len(result.body_pose.split(chunk)) if betas is None else betas.split(chunk)
    with torch.no_grad():
        for pose, go, b in zip(result.body_pose.split(chunk), result.global_orient.split(chunk), parts):
            v = body_model(pose, betas=b, global_orient=go if orient else None).vertices
            out.append(v.reshape(pose.shape[0], -1, 3))
    return torch.cat(out) if out else result.body_pose.new_zeros(0, body_model.num_vertices, 3)


def fitted_betas(result: FitResult) -> Optional[torch.Tensor]:
    """The fit's betas, or None when they are all zero (neutral shape: the body model's fast path)."""
    if result.betas is None or not bool(result.betas.any()):
        return None
    return result.betas


def to_crop_pixels(keypoints: torch.Tensor, center: torch.Tensor, scale: torch.Tensor, res: int = 224) -> torch.Tensor:
    """Original-image keypoints (B, K, 3) -> pixels of SPIN's res x res crop (side 200*scale around center)."""
    side = 200.0 * scale.to(keypoints.dtype)  # (B,)
    xy = (keypoints[..., :2] - center[:, None, :].to(keypoints.dtype)) / side[:, None, None] * res + res / 2.0
    return torch.cat([xy, keypoints[..., 2:]], -1)
