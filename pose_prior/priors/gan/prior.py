"""The frozen prior: a trained generator plus its latent space, behind one small interface (DESIGN.md).

`sample(n)`, `decode(z) -> (n, 63)` axis-angle body pose, `decode_matrices(z)`, `project(z)`,
`interpolate(z0, z1, steps)` and `invert(body_pose, body_model) -> z`. The generator's parameters never
require grad and the module stays in eval mode (no dropout), whatever `.train()` is called with; z stays
differentiable, so fitting and regression back-propagate into the latent vector.

`prior.pt` (written by `save_prior`, read by `load_prior` with `torch.load(weights_only=True)`) holds only
tensors and plain Python values:
    {"format": "pose_prior", "format_version": 1, "kind": "gan",
     "latent": {"name": "S", "dim": 32},
     "generator": {"class": "PoseGenerator", "kwargs": {...}, "state_dict": {name: tensor}},
     "provenance": {"date": ..., "git_commit": ..., "config": ..., "data": ..., ...}}
`load_prior` dispatches on `kind` through `PRIOR_LOADERS`, so other prior kinds (VPoser, GMM) can
register a loader with `register_prior_loader`.
"""

from __future__ import annotations

import datetime
import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pose_prior.batched_lbfgs import batched_lbfgs
from pose_prior.io import atomic_save, load_tensors_file
from pose_prior.latent import LatentSpace, make_latent
from pose_prior.metrics import mesh_distance
from pose_prior.nearest.distance import mesh_distance_matrix
from pose_prior.networks import PoseGenerator
from pose_prior.rotations import matrices_to_body_pose

FORMAT = "pose_prior"
FORMAT_VERSION = 1


class FrozenPrior(nn.Module):
    """A generator with frozen weights (always in eval mode) and its latent space."""

    def __init__(self, generator: PoseGenerator, latent: LatentSpace, provenance: dict | None = None) -> None:
        super().__init__()
        if generator.latent_dim != latent.dim:
            raise ValueError(f"generator latent_dim {generator.latent_dim} != latent space dim {latent.dim}")
        self.generator = generator
        self.latent = latent
        self.provenance = dict(provenance or {})
        for p in self.generator.parameters():
            p.requires_grad_(False)
        super().train(False)

    # --- always frozen ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> FrozenPrior:
        """Stays in eval mode (no dropout) whatever `mode` is: the prior is frozen."""
        return super().train(False)

    @property
    def latent_dim(self) -> int:
        return self.latent.dim

    @property
    def latent_type(self) -> str:
        return self.latent.name

    @property
    def num_joints(self) -> int:
        return self.generator.num_joints

    def _param(self) -> torch.Tensor:
        return next(self.generator.parameters())

    def extra_repr(self) -> str:
        return f"latent={self.latent!r}"

    # --- the shared prior interface --------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors (n, latent_dim) on the prior's device and dtype."""
        p = self._param()
        z = self.latent.sample(n, generator=generator, dtype=p.dtype)
        return z.to(p.device)

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, J, 3, 3) rotation matrices; differentiable in z."""
        return self.generator(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 3*J) axis-angle body pose (63 numbers); differentiable in z."""
        return matrices_to_body_pose(self.generator(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Project (..., latent_dim) onto the latent support (sphere for S, box for U, identity for N)."""
        return self.latent.project(z)

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """(dim,) -> (steps, dim) or (B, dim) -> (B, steps, dim): SLERP for S, linear for U and N."""
        return self.latent.interpolate(z0, z1, steps)

    # --- inversion -------------------------------------------------------------------------------
    def vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """(n, latent_dim) -> (n, V, 3) vertices of the decoded body (neutral shape, zero orientation)."""
        return _vertex_fn(body_model, self)(z)

    def invert(
        self,
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
        the final z is whichever of the two has the smaller Eq. 5 distance. A sample's result does not
        depend on its batch-mates (fixed candidate set, element-wise Adam, per-sample damping/solves). With `return_distance`, also return the final distances (B,) in model units.
        """
        with torch.inference_mode(False), torch.enable_grad():
            return self._invert(
                body_pose, body_model, steps, lr, init, restarts, candidates, refine_iters, seed, return_distance
            )

    def _invert(self, body_pose, body_model, steps, lr, init, restarts, candidates, refine_iters, seed, return_distance):
        p = self._param()
        body_pose = body_pose.detach().clone().to(device=p.device, dtype=p.dtype)
        B = body_pose.shape[0]
        mesh = _vertex_fn(body_model, self)
        with torch.no_grad():
            target = _as_vertices(body_model(body_pose)).detach().clone()  # (B, V, 3)
            # Starts: nearest fixed candidates (identical for every sample, so batch-independent).
            g = torch.Generator(device="cpu").manual_seed(seed)
            cand = self.latent.sample(max(candidates, restarts), generator=g, dtype=p.dtype).to(p.device)
            cand_verts = torch.cat([mesh(c) for c in cand.split(256)])  # (C, V, 3)
            nearest = mesh_distance_matrix(target, cand_verts).topk(restarts, dim=1, largest=False).indices
            starts = cand[nearest].transpose(0, 1)  # (R, B, dim)
            if init is not None:  # the given start replaces the farthest candidate start
                given = init.detach().to(starts).reshape(1, B, -1)
                starts = torch.cat([given, starts[:-1]]) if restarts > 1 else given
        R = starts.shape[0]
        z = self.project(starts.reshape(R * B, -1)).clone().requires_grad_(True)
        tgt = target.repeat(R, 1, 1)  # (R*B, V, 3)

        # Phase 1: Adam on Eq. 5, element-wise hence per-sample independent.
        opt = torch.optim.Adam([z], lr=lr)
        best_d = torch.full((R * B,), math.inf, device=p.device, dtype=p.dtype)
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
                z.copy_(self.project(z))

        # Phase 2: per-sample refinement of every start on the squared vertex residual
        # (Levenberg-Marquardt with forward-mode Jacobians; per-sample L-BFGS if the body model does not
        # support torch.func). A refined z is kept only where it lowers the Eq. 5 distance.
        z_all, d_all = best_z, best_d  # (R*B, dim), (R*B,)
        if refine_iters > 0:
            try:
                z_ref = _levenberg_marquardt(self, mesh, best_z.detach(), tgt, refine_iters)
            except Exception:  # noqa: BLE001 - torch.func unsupported by this body model
                z_ref = self._lbfgs_refine(mesh, best_z.detach(), tgt, refine_iters)
            with torch.no_grad():
                d_ref = mesh_distance(mesh(z_ref), tgt)
                take = d_ref < d_all
                z_all = torch.where(take[:, None], z_ref, z_all)
                d_all = torch.where(take, d_ref, d_all)
        d_final, best_r = d_all.reshape(R, B).min(dim=0)  # (B,): best start per sample
        z_final = z_all.reshape(R, B, -1)[best_r, torch.arange(B, device=p.device)]  # (B, dim)
        z_final = z_final.detach()
        return (z_final, d_final.detach()) if return_distance else z_final

    def _lbfgs_refine(self, mesh, z0: torch.Tensor, target: torch.Tensor, iters: int) -> torch.Tensor:
        """Per-sample L-BFGS (batched_lbfgs) on the mean squared vertex distance."""
        scale = 1e6 / target.abs().amax().clamp_min(1e-12) ** 2  # ~mm^2 for a body of extent ~1 m

        def squared(x: torch.Tensor) -> torch.Tensor:
            return (mesh(x) - target).pow(2).sum(-1).mean(-1) * scale  # (B,)

        project = None if self.latent.name == "N" else self.project
        res = batched_lbfgs(squared, z0, project=project, max_iter=4 * iters, gtol=1e-10, ftol=1e-12)
        return self.project(res.x).detach()


def _levenberg_marquardt(
    prior: FrozenPrior, mesh: Callable, z: torch.Tensor, target: torch.Tensor, iters: int, chunk: int = 64
) -> torch.Tensor:
    """Per-sample Levenberg-Marquardt on the vertex residual, each sample with its own damping.

    Jacobians (B, 3V, dim) come from forward-mode AD (torch.func.jacfwd under vmap). On the sphere the
    step lives in the tangent plane (J (I - z z^T)) and z is projected after each step. A step is
    accepted per sample when it lowers the squared residual; damping shrinks on success, grows on failure.
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
        J = torch.cat([jac(c) for c in z.split(chunk)]).detach()  # (B, 3V, D)
        if prior.latent.name == "S":
            J = J @ (eye - z[:, :, None] * z[:, None, :])
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


def _as_vertices(out: Any) -> torch.Tensor:
    """Body model output -> (B, V, 3): a `BodyOutput`-like object with `.vertices`, or a tensor."""
    return out.vertices if hasattr(out, "vertices") else out


def _accepts_matrices(body_model: nn.Module) -> bool:
    try:
        from pose_prior.body_model import BodyModel
    except ImportError:  # pragma: no cover - body model package missing
        return False
    return isinstance(body_model, BodyModel)


def _vertex_fn(body_model: nn.Module, prior: FrozenPrior) -> Callable[[torch.Tensor], torch.Tensor]:
    """z (n, dim) -> vertices (n, V, 3). Our BodyModel takes rotation matrices directly (no log map)."""
    if _accepts_matrices(body_model):
        return lambda z: _as_vertices(body_model(prior.decode_matrices(z)))
    return lambda z: _as_vertices(body_model(prior.decode(z)))


# --- prior.pt -------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, key: str) -> Any:
    """Plain python / tensor values only (what torch.load(weights_only=True) reads back)."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _check_plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_check_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"save_prior: provenance value {key} has type {type(value).__name__}; expected str, int, float, bool, "
        "None, a tensor, or lists / dicts of these (e.g. OmegaConf.to_container(cfg, resolve=True))"
    )


def git_commit(directory: str | os.PathLike | None = None) -> str | None:
    """Current git commit of `directory` (default: this package's checkout), or None outside git."""
    directory = directory or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stamp_provenance(*parts: dict | None) -> dict:
    """Merge provenance dicts (later wins), check they hold plain values, add date, git commit, torch."""
    merged: dict = {}
    for part in parts:
        merged.update(part or {})
    prov = _check_plain(merged, "provenance")
    prov.setdefault("date", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    prov.setdefault("git_commit", git_commit())
    prov.setdefault("torch_version", str(torch.__version__))  # TorchVersion is not weights_only-loadable
    return prov


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict, for a prior file."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def write_prior_file(
    path: str | os.PathLike, kind: str, latent_name: str, latent_dim: int, body: dict[str, Any],
    *provenance: dict | None,
) -> None:
    """Write a prior file of any kind atomically: the format envelope (format, version, kind, latent,
    provenance parts merged and stamped with date and git commit) around `body`, the kind's own entries (tensors and
    plain values only, so `torch.load(weights_only=True)` reads it)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
               "latent": {"name": latent_name, "dim": int(latent_dim)}, **body,
               "provenance": stamp_provenance(*provenance)}
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


def save_prior(
    path: str | os.PathLike, generator: PoseGenerator, latent: LatentSpace, provenance: dict | None = None
) -> None:
    """Write a GAN prior file atomically (tensors and plain values only); fills `date`, `git_commit`."""
    write_prior_file(path, "gan", latent.name, latent.dim, {"generator": {
        "class": type(generator).__name__, "kwargs": generator.arch_kwargs(),
        "state_dict": cpu_state_dict(generator)}}, provenance)


def _load_gan(payload: dict, path: str, device: torch.device | str | None) -> FrozenPrior:
    try:
        latent = make_latent(payload["latent"]["name"], int(payload["latent"]["dim"]))
        gen_entry = payload["generator"]
        generator = PoseGenerator(**gen_entry["kwargs"])
        generator.load_state_dict(gen_entry["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: malformed GAN prior file ({type(err).__name__}: {err})") from err
    prior = FrozenPrior(generator, latent, provenance=payload.get("provenance"))
    return prior.to(device) if device is not None else prior


PriorLoader = Callable[[dict, str, Any], nn.Module]
PRIOR_LOADERS: dict[str, PriorLoader] = {"gan": _load_gan}


def register_prior_loader(kind: str, loader: PriorLoader) -> None:
    """Register `loader(payload, path, device) -> prior` for files whose `kind` is `kind`."""
    PRIOR_LOADERS[kind] = loader


def load_prior(path: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """Load a prior file written by `save_prior` (or a registered kind) with torch.load(weights_only=True)."""
    path = os.fspath(path)
    payload = load_tensors_file(path, "a prior file",
                                "A Lightning .ckpt is not a prior: export one with save_prior / the export callback.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a prior file: expected a dict with 'format': '{FORMAT}', got {keys}")
    kind = payload.get("kind")
    if kind not in PRIOR_LOADERS:
        raise ValueError(f"{path}: unknown prior kind {kind!r}; known kinds: {sorted(PRIOR_LOADERS)}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: prior format_version {version!r} is newer than this code ({FORMAT_VERSION})")
    return PRIOR_LOADERS[kind](payload, path, device)


# Baseline priors (pose_prior/priors/) register lazily: their modules import this one.
def _lazy_loader(module: str, name: str) -> PriorLoader:
    def load(payload: dict, path: str, device: Any) -> nn.Module:
        import importlib

        return getattr(importlib.import_module(module), name)(payload, path, device)

    return load


PRIOR_LOADERS.setdefault("vposer", _lazy_loader("pose_prior.priors.vposer_prior", "load_vposer_payload"))
PRIOR_LOADERS.setdefault("gmm", _lazy_loader("pose_prior.priors.gmm_prior", "load_gmm_payload"))
