"""Study: would a batched per-sample Levenberg-Marquardt body stage fit 2D keypoints faster than L-BFGS?

The body stage of `fit_keypoints` minimises sum_j c_j^2 sum_xy GMoF(r) over the latent, orientation and
camera. GMoF(r) = s^2 r^2 / (s^2 + r^2) is the square of e(r) = s r / sqrt(s^2 + r^2), so the loss is exactly
a least-squares problem in the residuals c_j e(r), and Gauss-Newton / Levenberg-Marquardt applies. Both
optimisers start here from the same rows: `fit_keypoints` with `body_iters=0` gives each frame's start
(camera stage, best orientation); L-BFGS is `fit_keypoints` from that start with no camera stage and no flip
(the default stopping rule); LM runs from the same start with per-sample damping: the step solves
(J^T J + lambda (diag(J^T J) + eps)) d = -J^T e with forward-mode Jacobians (torch.func.jacfwd under vmap,
through the prior's projection so a spherical latent moves in its tangent plane), is accepted when the loss
falls (lambda / 3) and rejected otherwise (lambda x 4); a sample stops when an accepted step lowers its loss
by less than `--rtol` relative, when lambda exceeds 1e10, or at `--iters`.

Prints, per prior: seconds per 100 frames of the body stage, P-MPJPE, the median final loss, LM iterations
and Jacobian rows. Not run by `make bench` (a study: its conclusion is in bench/README.md).

    .venv/bin/python bench/fitting_lm/run.py [--frames 64] [--iters 30] [--prior gan_s=... --prior vposer=...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.func import jacfwd, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datamodules.h36m.reader import H36MEvalDataset, read_h36m_p2  # noqa: E402
from pose_prior.body_model import load_body_model  # noqa: E402
from pose_prior.body_model.h36m_regressor import h36m_regressor_for  # noqa: E402
from pose_prior.body_model.keypoint_body import KeypointBody  # noqa: E402
from pose_prior.body_model.keypoints import keypoint_map_for_body_model  # noqa: E402
from pose_prior.evaluation.metrics3d import h36m_p2_errors  # noqa: E402
from pose_prior.fitting import FitSettings, fit_keypoints  # noqa: E402
from pose_prior.fitting.camera import perspective_project  # noqa: E402
from pose_prior.fitting.keypoint_fit import camera_to_vars, to_crop_pixels, vars_to_camera  # noqa: E402
from pose_prior.priors import load_prior  # noqa: E402
from pose_prior.rotations import axis_angle_to_matrix  # noqa: E402

DEFAULT_PRIORS = {name: f"outputs/compare/priors/{name}/prior.pt" for name in ("vposer", "gan_s")}


def residuals_fn(prior, kb: KeypointBody, settings: FitSettings, D: int):
    """x (P,), keypoints (K, 3), conf (K,), center (2,) -> (2K,) residuals whose squares sum to the body loss."""
    sigma = settings.sigma

    def one(x, kp, conf, center):
        z = prior.project(x[None, :D]) if prior.constrained else x[None, :D]
        rot = prior.decode_matrices(z)
        t = vars_to_camera(x[None, D + 3:], settings.focal)
        pts = kb(axis_angle_to_matrix(x[None, D:D + 3]), rot, t, None)
        uv = perspective_project(pts, torch.zeros_like(t), settings.focal, center[None])[0]
        r = uv - kp[:, :2]
        return (conf[:, None] * sigma * r / torch.sqrt(sigma**2 + r * r)).reshape(-1)

    return one


def levenberg_marquardt(fn, x0, kp, conf, center, project, iters: int, rtol: float):
    """Per-sample LM on residuals fn(x, kp, conf, center) (batched with vmap); returns x, loss, iterations, jac rows."""
    batched = vmap(fn)
    jac = vmap(jacfwd(fn))
    x = x0.clone()
    lam = torch.full((x.shape[0],), 1e-3, dtype=x.dtype)
    running = torch.ones(x.shape[0], dtype=torch.bool)
    need_jac = torch.ones_like(running)
    J = e = None
    iterations = torch.zeros(x.shape[0], dtype=torch.long)
    jac_rows = 0
    with torch.no_grad():
        e = batched(x, kp, conf, center)  # (B, M)
    loss = e.square().sum(-1)
    J = torch.zeros(x.shape[0], e.shape[1], x.shape[1], dtype=x.dtype)
    for _ in range(iters):
        if not running.any():
            break
        rows = torch.nonzero(running & need_jac)[:, 0]
        if rows.numel():
            J[rows] = jac(x[rows], kp[rows], conf[rows], center[rows]).detach()
            jac_rows += rows.numel()
        idx = torch.nonzero(running)[:, 0]
        A = J[idx].transpose(1, 2) @ J[idx]  # (n, P, P)
        g = (J[idx].transpose(1, 2) @ e[idx, :, None])[..., 0]  # (n, P)
        diag = torch.diagonal(A, dim1=1, dim2=2)
        damp = lam[idx, None] * (diag + 1e-9 * diag.mean(-1, keepdim=True))
        step = -torch.linalg.solve(A + torch.diag_embed(damp), g[..., None])[..., 0]
        x_try = project(x[idx] + step)
        with torch.no_grad():
            e_try = batched(x_try, kp[idx], conf[idx], center[idx])
        loss_try = e_try.square().sum(-1)
        ok = loss_try < loss[idx]
        gain = (loss[idx] - loss_try) / loss[idx].clamp_min(1e-12)
        acc = idx[ok]
        x[acc], e[acc], loss[acc] = x_try[ok], e_try[ok], loss_try[ok]
        lam[idx] = torch.where(ok, (lam[idx] / 3).clamp_min(1e-9), lam[idx] * 4)
        need_jac[:] = False
        need_jac[acc] = True
        iterations[idx] += 1
        stop = (ok & (gain < rtol)) | (lam[idx] > 1e10)
        running[idx[stop]] = False
    return x, loss, iterations, jac_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--h36m", default="outputs/demo/h36m/h36m_valid_protocol2.npz")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--prior", action="append", default=[], help="name=path (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = dict(p.split("=", 1) for p in args.prior) if args.prior else dict(DEFAULT_PRIORS)
    if not Path(args.h36m).is_file() or not all(Path(p).is_file() for p in paths.values()):
        print("SKIPPED: needs make demo-h36m and make compare's priors (or --h36m / --prior)")
        return
    body_model = load_body_model("open")
    reg = torch.as_tensor(h36m_regressor_for("open", None, body_model.num_vertices), dtype=torch.float64)
    data = H36MEvalDataset(read_h36m_p2(args.h36m))
    items = [data[i] for i in range(min(args.frames, len(data)))]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("keypoints", "center", "scale", "S")}
    kp = to_crop_pixels(batch["keypoints"], batch["center"], batch["scale"]).float()
    center = torch.full((kp.shape[0], 2), 112.0)
    kb = KeypointBody(body_model, keypoint_map_for_body_model(body_model, "spin24"))
    settings = FitSettings()
    n = kp.shape[0]

    def errors(body_pose, orient):
        with torch.no_grad():
            verts = body_model(body_pose, global_orient=orient).vertices
        return h36m_p2_errors(verts, batch["S"].double(), reg)[1]

    print(f"{n} frames, body stage only (same starts), 1 thread")
    print(f"{'prior':8s} {'method':7s} {'s/100 frames':>12s} {'P-MPJPE mm':>10s} {'median loss':>11s} "
          f"{'iterations':>10s} {'jacobian rows':>13s}")
    for name, path in paths.items():
        prior = load_prior(path)
        start = fit_keypoints(prior, body_model, kp, "spin24", center, replace(settings, body_iters=0), keypoint_body=kb)
        body_only = replace(settings, camera_iters=0, flip=False)
        t0 = time.perf_counter()
        lb = fit_keypoints(prior, body_model, kp, "spin24", center, body_only, keypoint_body=kb,
                           init_latent=start.latent, init_global_orient=start.global_orient, init_transl=start.transl)
        t_lbfgs = time.perf_counter() - t0
        print(f"{name:8s} {'L-BFGS':7s} {t_lbfgs * 100 / n:12.2f} {float(errors(lb.body_pose, lb.global_orient).mean()):10.2f} "
              f"{float(lb.losses['total'].median()):11.1f} {float(lb.iterations.float().mean()):10.1f} {'-':>13s}")
        D = prior.latent_dim
        x0 = torch.cat([start.latent.float(), start.global_orient.float(), camera_to_vars(start.transl, settings.focal).float()], -1)
        names = list(kb.layout.joint_names)
        conf = kp[..., 2].clamp(min=0) * kb.available[None].float()
        for ignored in settings.ignore_keypoints:
            if ignored in names:
                conf[:, names.index(ignored)] = 0.0

        def project(x, prior=prior, D=D):
            return torch.cat([prior.project(x[:, :D]), x[:, D:]], -1) if prior.constrained else x

        fn = residuals_fn(prior, kb, settings, D)
        t0 = time.perf_counter()
        x, loss, iters, jac_rows = levenberg_marquardt(fn, x0, kp, conf, center, project, args.iters, args.rtol)
        t_lm = time.perf_counter() - t0
        with torch.no_grad():
            pose = prior.decode(project(x)[:, :D])
        print(f"{name:8s} {'LM':7s} {t_lm * 100 / n:12.2f} {float(errors(pose, x[:, D:D + 3]).mean()):10.2f} "
              f"{float(loss.median()):11.1f} {float(iters.float().mean()):10.1f} {jac_rows:13d}")
        print(f"RESULT {name}: LM / L-BFGS body-stage time {t_lm / t_lbfgs:.2f}")


if __name__ == "__main__":
    main()
