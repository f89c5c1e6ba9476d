"""Latent spaces of the GAN priors (paper Sec. 3.1): N (normal), U (uniform box), S (unit sphere).

Each space knows how to sample, how to project an arbitrary vector onto its support (used after every
optimisation step when fitting in the latent space) and how to interpolate between two latent vectors
(paper Eqs. 2-3: linear for N and U, SLERP for S).

SLERP edge cases (the endpoints are first projected onto the sphere):
- nearly equal endpoints (angle < `SphericalLatent.small_angle`): normalised linear interpolation,
  which agrees with SLERP to second order in the angle;
- nearly opposite endpoints (sin of the angle < `SphericalLatent.small_angle`, angle ~ pi): the great
  circle is not unique. We choose the deterministic one through z0 and the coordinate axis e_k with the
  smallest |z0_k| (lowest index on ties), Gram-Schmidt-ed against z0; the path then runs from z0 to -z0,
  which equals z1 up to the tolerance.
Angles are computed in float64 as 2 * atan2(|a - b|, |a + b|), accurate near 0 and near pi.
"""

from __future__ import annotations

import math

import torch


class LatentSpace:
    """Base class: a distribution over R^dim with a support, a projection and an interpolation."""

    name: str = ""
    constrained: bool = False  # the support is not all of R^dim: `project` after every optimisation step

    def __init__(self, dim: int = 32) -> None:
        if int(dim) < 1:
            raise ValueError(f"latent dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.dim == other.dim  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.dim))

    # --- sampling --------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Draw n latent vectors (n, dim). With a `generator` and no `device`, sample on its device."""
        if device is None and generator is not None:
            device = generator.device
        return self._sample((int(n), self.dim), generator, device, dtype or torch.get_default_dtype())

    def _sample(self, shape, generator, device, dtype) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- support ---------------------------------------------------------------------------------
    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Project (..., dim) onto the support of the distribution."""
        return z

    def mode(self, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor | None:
        """(dim,) the central latent (N's mode, U's centre): a fit's first start; None where there is none (S)."""
        return torch.zeros(self.dim, dtype=dtype, device=device)

    def tangent(self, jacobian: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Restrict Jacobians (B, M, dim) at z (B, dim) to directions that stay on the support."""
        return jacobian

    # --- interpolation ---------------------------------------------------------------------------
    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """(dim,) x2 -> (steps, dim), or (B, dim) x2 -> (B, steps, dim); includes both endpoints."""
        self._check_pair(z0, z1, steps)
        single = z0.dim() == 1
        a, b = (z0[None], z1[None]) if single else (z0, z1)
        t = torch.linspace(0.0, 1.0, steps, device=a.device, dtype=torch.float64)
        out = self._interpolate(a, b, t)  # (B, steps, dim)
        return out[0] if single else out

    def _interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Linear interpolation (paper Eq. 2); computed in float64, returned in a's dtype."""
        a64, b64 = a.double()[:, None], b.double()[:, None]  # (B, 1, dim)
        t = t[None, :, None]  # (1, steps, 1)
        out = (1.0 - t) * a64 + t * b64
        out[:, -1] = b64[:, 0]  # exact endpoint
        return out.to(a.dtype)

    def _check_pair(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> None:
        if z0.shape != z1.shape or z0.dim() not in (1, 2) or z0.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}.interpolate expects two tensors of shape (dim,) or (B, dim) with "
                f"dim={self.dim}, got {tuple(z0.shape)} and {tuple(z1.shape)}"
            )
        if int(steps) < 2:
            raise ValueError(f"interpolate needs steps >= 2 (both endpoints), got {steps}")


class NormalLatent(LatentSpace):
    """GAN-N: z ~ N(0, I); support R^dim (projection is the identity)."""

    name = "N"

    def _sample(self, shape, generator, device, dtype) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)


class UniformLatent(LatentSpace):
    """GAN-U: z ~ U([-1, 1]^dim); projection clamps to the box."""

    name = "U"
    constrained = True

    def _sample(self, shape, generator, device, dtype) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=dtype) * 2.0 - 1.0

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(-1.0, 1.0)


class SphericalLatent(LatentSpace):
    """GAN-S: z = x / ||x|| with x ~ N(0, I); projection normalises; interpolation is SLERP (Eq. 3)."""

    name = "S"
    constrained = True
    small_angle = 1e-6  # below this angle (or sin of the angle near pi) the special cases apply

    def _sample(self, shape, generator, device, dtype) -> torch.Tensor:
        return self.project(torch.randn(shape, generator=generator, device=device, dtype=dtype))

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """z / ||z||; the zero vector (no direction) maps to e_0."""
        norm = z.norm(dim=-1, keepdim=True)
        tiny = norm <= torch.finfo(z.dtype).tiny
        e0 = torch.zeros_like(z)
        e0[..., 0] = 1.0
        return torch.where(tiny, e0, z / norm.clamp_min(torch.finfo(z.dtype).tiny))

    def mode(self, dtype: torch.dtype, device: torch.device | str | None = None) -> None:
        """The uniform distribution on the sphere has no mode."""
        return None

    def tangent(self, jacobian: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """J (I - z z^T): steps in the sphere's tangent plane at z (z on the sphere)."""
        eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        return jacobian @ (eye - z[:, :, None] * z[:, None, :])

    def _interpolate(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a64, b64 = self.project(a.double()), self.project(b.double())  # (B, dim) on the sphere
        theta = 2.0 * torch.atan2((a64 - b64).norm(dim=-1), (a64 + b64).norm(dim=-1))  # (B,) in [0, pi]
        # Unit tangent at a towards b: u = (b - cos(theta) a) / sin(theta), well conditioned away from 0, pi.
        ortho = b64 - (a64 * b64).sum(-1, keepdim=True) * a64
        ortho_norm = ortho.norm(dim=-1, keepdim=True)
        opposite = (ortho_norm[:, 0] < self.small_angle) & (theta > math.pi / 2)
        if opposite.any():
            ortho = torch.where(opposite[:, None], self._deterministic_tangent(a64), ortho)
            ortho_norm = ortho.norm(dim=-1, keepdim=True)
            theta = torch.where(opposite, torch.full_like(theta, math.pi), theta)
        u = ortho / ortho_norm.clamp_min(1e-300)
        phi = theta[:, None, None] * t[None, :, None]  # (B, steps, 1)
        arc = torch.cos(phi) * a64[:, None] + torch.sin(phi) * u[:, None]  # (B, steps, dim)
        # Nearly equal endpoints: normalised lerp (the tangent direction is numerically meaningless there).
        tt = t[None, :, None]
        nlerp = self.project((1.0 - tt) * a64[:, None] + tt * b64[:, None])
        near = (theta < self.small_angle)[:, None, None]
        out = torch.where(near, nlerp, arc)
        out[:, 0] = a64
        out[~opposite, -1] = b64[~opposite]  # exact endpoints (the opposite case ends at -a ~ b)
        return out.to(a.dtype)

    @staticmethod
    def _deterministic_tangent(a: torch.Tensor) -> torch.Tensor:
        """A unit vector orthogonal to each row of a (B, dim): Gram-Schmidt of e_k, k = argmin |a_k|."""
        k = a.abs().argmin(dim=-1)  # (B,)
        e = torch.zeros_like(a)
        e[torch.arange(a.shape[0], device=a.device), k] = 1.0
        v = e - (a * e).sum(-1, keepdim=True) * a
        return v / v.norm(dim=-1, keepdim=True)


LATENT_SPACES: dict[str, type[LatentSpace]] = {"N": NormalLatent, "U": UniformLatent, "S": SphericalLatent}


def make_latent(name: str, dim: int = 32) -> LatentSpace:
    """Latent space by its paper name: "N", "U" or "S" (case-insensitive)."""
    key = str(name).upper()
    if key not in LATENT_SPACES:
        raise ValueError(f"unknown latent space {name!r}: expected one of {sorted(LATENT_SPACES)}")
    return LATENT_SPACES[key](dim)
