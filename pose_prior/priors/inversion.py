"""Inversion of a latent prior: the latent whose decoded mesh is nearest (Eq. 5) to a given body.

Used by the interpolation evaluation (paper Sec. 4.2: test bodies are inverted, then interpolated in
the latent space). Per sample, batched, and independent of the batch: a fixed seeded candidate set
gives every sample its starts, Adam is element-wise, and the refinement solves per-sample systems.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from pose_prior.body_model.posing import as_vertices
from pose_prior.evaluation.distance import mesh_distance, mesh_distance_matrix
from pose_prior.fitting.lbfgs import batched_lbfgs

if TYPE_CHECKING:  # pragma: no cover
    from pose_prior.priors.base import LatentPrior


def invert_latent(
    prior: LatentPrior,
    body_pose: torch.Tensor,
    body_model: nn.Module,
    steps: int = 0,
    lr: float = 0.05,
    init: torch.Tensor | None = None,
    restarts: int = 4,
    candidates: int = 256,
    refine_iters: int = 15,
    seed: int = 0,
    return_distance: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Latent vectors (B, latent_dim) whose decoded meshes best match `body_pose` (B, 63) under Eq. 5.

    Per sample: the `restarts` nearest (Eq. 5) of `candidates` fixed seeded latents (plus `init`, if
    given) start `steps` Adam steps on the Eq. 5 distance (cosine-decayed lr, projection after each
    step); the best start is refined by `refine_iters` per-sample Levenberg-Marquardt steps on the
    squared vertex residual (per-sample L-BFGS if torch.func cannot differentiate the body model);
    the final z is whichever of the two has the smaller Eq. 5 distance. With `return_distance`, also
    return the final distances (B,) in model units.
    """
    with torch.inference_mode(False), torch.enable_grad():
        z, d = _invert(prior, body_pose, body_model, steps, lr, init, restarts, candidates, refine_iters, seed)
    return (z, d) if return_distance else z


def _invert(prior, body_pose, body_model, steps, lr, init, restarts, candidates, refine_iters, seed):
    dtype, device = prior.dtype, prior.device
    body_pose = body_pose.detach().clone().to(device=device, dtype=dtype)
    B = body_pose.shape[0]

    def mesh(z: torch.Tensor) -> torch.Tensor:
        return prior.vertices(z, body_model)

    with torch.no_grad():
        target = as_vertices(body_model(body_pose)).detach().clone()  # (B, V, 3)
        # Starts: nearest fixed candidates (identical for every sample, so batch-independent).
        g = torch.Generator(device="cpu").manual_seed(seed)
        cand = prior.latent.sample(max(candidates, restarts), generator=g, dtype=dtype).to(device)
        cand_verts = torch.cat([mesh(c) for c in cand.split(256)])  # (C, V, 3)
        nearest = mesh_distance_matrix(target, cand_verts).topk(restarts, dim=1, largest=False).indices
        starts = cand[nearest].transpose(0, 1)  # (R, B, dim)
        if init is not None:  # the given start replaces the farthest candidate start
            given = init.detach().to(starts).reshape(1, B, -1)
            starts = torch.cat([given, starts[:-1]]) if restarts > 1 else given
    R = starts.shape[0]
    z = prior.project(starts.reshape(R * B, -1)).clone().requires_grad_(True)
    tgt = target.repeat(R, 1, 1)  # (R*B, V, 3)

    # Phase 1: Adam on Eq. 5, element-wise hence per-sample independent.
    opt = torch.optim.Adam([z], lr=lr)
    best_d = torch.full((R * B,), math.inf, device=device, dtype=dtype)
    best_z = z.detach().clone()
    for it in range(steps + 1):
        d = mesh_distance(mesh(z), tgt)  # (R*B,)
        with torch.no_grad():
            better = d < best_d
            best_d = torch.where(better, d, best_d)
            best_z[better] = z[better]
        if it == steps:
            break
        for group in opt.param_groups:  # cosine decay from lr to lr / 100
            group["lr"] = lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * it / max(steps, 1))))
        (grad,) = torch.autograd.grad(d.sum(), z)
        z.grad = grad
        opt.step()
        with torch.no_grad():
            z.copy_(prior.project(z))

    # Phase 2: per-sample refinement of every start on the squared vertex residual (Levenberg-Marquardt
    # with forward-mode Jacobians; per-sample L-BFGS if the body model does not support torch.func).
    # A refined z is kept only where it lowers the Eq. 5 distance.
    z_all, d_all = best_z, best_d  # (R*B, dim), (R*B,)
    if refine_iters > 0:
        try:
            z_ref = _levenberg_marquardt(prior, mesh, best_z.detach(), tgt, refine_iters)
        except Exception:  # noqa: BLE001 - torch.func unsupported by this body model
            z_ref = _lbfgs_refine(prior, mesh, best_z.detach(), tgt, refine_iters)
        with torch.no_grad():
            d_ref = mesh_distance(mesh(z_ref), tgt)
            take = d_ref < d_all
            z_all = torch.where(take[:, None], z_ref, z_all)
            d_all = torch.where(take, d_ref, d_all)
    d_final, best_r = d_all.reshape(R, B).min(dim=0)  # (B,): best start per sample
    z_final = z_all.reshape(R, B, -1)[best_r, torch.arange(B, device=device)]  # (B, dim)
    return z_final.detach(), d_final.detach()


def _lbfgs_refine(prior: LatentPrior, mesh: Callable, z0: torch.Tensor, target: torch.Tensor,
                  iters: int) -> torch.Tensor:
    """Per-sample L-BFGS (batched_lbfgs) on the mean squared vertex distance."""
    scale = 1e6 / target.abs().amax().clamp_min(1e-12) ** 2  # ~mm^2 for a body of extent ~1 m

    def squared(x: torch.Tensor) -> torch.Tensor:
        return (mesh(x) - target).pow(2).sum(-1).mean(-1) * scale  # (B,)

    project = prior.project if prior.constrained else None
    res = batched_lbfgs(squared, z0, project=project, max_iter=4 * iters, gtol=1e-10, ftol=1e-12)
    return prior.project(res.x).detach()


def _levenberg_marquardt(
    prior: LatentPrior, mesh: Callable, z: torch.Tensor, target: torch.Tensor, iters: int, chunk: int = 64
) -> torch.Tensor:
    """Per-sample Levenberg-Marquardt on the vertex residual, each sample with its own damping.

    Jacobians (B, 3V, dim) come from forward-mode AD (torch.func.jacfwd under vmap). On a curved support
    the step lives in its tangent plane (`LatentSpace.tangent`) and z is projected after each step. A
    step is accepted per sample when it lowers the squared residual; damping shrinks on success, grows
    on failure.
    """
    from torch.func import jacfwd, vmap

    def flat(zi: torch.Tensor) -> torch.Tensor:  # (dim,) -> (3V,)
        return mesh(zi[None]).reshape(-1)

    jac = vmap(jacfwd(flat))
    B, D = z.shape
    eye = torch.eye(D, device=z.device, dtype=z.dtype)
    lam = torch.full((B,), 1e-3, device=z.device, dtype=z.dtype)
    with torch.no_grad():
        res = (mesh(z) - target).reshape(B, -1)  # (B, 3V)
        cost = res.pow(2).sum(-1)
    for _ in range(iters):
        J = prior.latent.tangent(torch.cat([jac(c) for c in z.split(chunk)]).detach(), z)  # (B, 3V, D)
        with torch.no_grad():
            A = J.transpose(1, 2) @ J  # (B, D, D)
            g = (J.transpose(1, 2) @ res[..., None])[..., 0]  # (B, D)
            damp = lam[:, None, None] * (torch.diagonal(A, dim1=1, dim2=2).mean(-1)[:, None, None] * eye + eye * 1e-12)
            step = -torch.linalg.solve(A + damp, g[..., None])[..., 0]
            z_new = prior.project(z + step)
            res_new = (mesh(z_new) - target).reshape(B, -1)
            cost_new = res_new.pow(2).sum(-1)
            ok = cost_new < cost
            z = torch.where(ok[:, None], z_new, z)
            res = torch.where(ok[:, None], res_new, res)
            cost = torch.where(ok, cost_new, cost)
            lam = torch.where(ok, lam / 3.0, lam * 4.0).clamp(1e-9, 1e9)
    return z.detach()
