"""The disentangled pose-and-shape prior (paper supplement D.1): a pose prior (GAN-S) and GAN-beta behind
one prior whose latent is the concatenation [z_pose, z_shape].

Sampling, projection and interpolation act on each part with its own latent space (so two spherical
parts are two spheres, each SLERPed); `decode` / `decode_matrices` are the pose prior's on z_pose (the pose
interface works unchanged; `vertices` keeps the neutral shape), `decode_betas` is GAN-beta's on z_shape,
`body_vertices` the bodies with both. It is not a file kind of its own: it is made from two prior files
(`PoseShapePair.from_files`), each saved and versioned by its own training run.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from pose_prior.priors.base import Prior
from pose_prior.priors.shape.prior import GanBetaPrior, shaped_vertices


class PoseShapePair(Prior):
    """A pose prior and a shape prior with independent latents, concatenated (pose first)."""

    kind = "pose+gan_beta"
    yields = "body_pose+betas"

    def __init__(self, pose: Prior, shape: GanBetaPrior) -> None:
        if pose.yields != "body_pose" or pose.latent_is_pose:
            raise ValueError(f"the pose part must be a latent pose prior, got kind {pose.kind!r}")
        if shape.yields != "betas":
            raise ValueError(f"the shape part must yield betas, got {shape.yields!r}")
        super().__init__(provenance={"pose": pose.provenance, "shape": shape.provenance})
        self.pose, self.shape = pose, shape

    @classmethod
    def from_files(cls, pose_path: str | os.PathLike, shape_path: str | os.PathLike,
                   device: torch.device | str | None = None) -> PoseShapePair:
        from pose_prior.priors.file_format import load_prior

        return cls(load_prior(pose_path, device), load_prior(shape_path, device))

    @property
    def dtype(self) -> torch.dtype:
        return self.pose.dtype

    @property
    def device(self) -> torch.device:
        return self.pose.device

    @property
    def latent_dim(self) -> int:
        return self.pose.latent_dim + self.shape.latent_dim

    @property
    def latent_type(self) -> str:
        a, b = self.pose.latent_type, self.shape.latent_type
        return a if a == b else f"{a}+{b}"

    @property
    def constrained(self) -> bool:
        return self.pose.constrained or self.shape.constrained

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pose": self.pose.describe(), "shape": self.shape.describe()}

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., pose_dim + shape_dim) -> z_pose (..., pose_dim), z_shape (..., shape_dim)."""
        return z.split([self.pose.latent_dim, self.shape.latent_dim], dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.cat([self.pose.sample(n, generator), self.shape.sample(n, generator).to(self.device)], -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.pose.decode(self.split(z)[0])

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        return self.pose.decode_matrices(self.split(z)[0])

    def decode_betas(self, z: torch.Tensor) -> torch.Tensor:
        return self.shape.decode(self.split(z)[1])

    def decode_both(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zp, zs = self.split(z)
        return self.pose.decode(zp), self.shape.decode(zs)

    def decode_matrices_and_betas(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zp, zs = self.split(z)
        return self.pose.decode_matrices(zp), self.shape.decode(zs)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        zp, zs = self.split(z)
        return torch.cat([self.pose.project(zp), self.shape.project(zs)], -1)

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        (p0, s0), (p1, s1) = self.split(z0), self.split(z1)
        return torch.cat([self.pose.interpolate(p0, p1, steps), self.shape.interpolate(s0, s1, steps)], -1)

    def vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """The pose part's bodies (neutral shape), as the interface says."""
        return self.pose.vertices(self.split(z)[0], body_model)

    def body_vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """(n, V, 3) bodies in the decoded pose with the decoded betas."""
        zp, zs = self.split(z)
        return shaped_vertices(body_model, self.shape.decode(zs), self.pose.decode_matrices(zp))

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module, return_distance: bool = False,
               **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The pose prior's inversion (neutral shape); the shape part is GAN-beta's most average start."""
        out = self.pose.invert(body_pose, body_model, return_distance=return_distance, **kwargs)
        zp, dist = out if return_distance else (out, None)
        zs = self.shape.fit_starts(1, 64, seed=0).to(zp).expand(zp.shape[0], -1)
        z = torch.cat([zp, zs], -1)
        return (z, dist) if return_distance else z

    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        """The pose prior's starts, each with GAN-beta's most average betas' latent (smallest ||beta||)."""
        zp = self.pose.fit_starts(count, candidates, seed)
        zs = self.shape.fit_starts(1, candidates, seed).to(zp)
        return torch.cat([zp, zs.expand(zp.shape[0], -1)], -1)

    def fit_penalty(self, z: torch.Tensor, settings: Any) -> torch.Tensor | None:
        return self.pose.fit_penalty(self.split(z)[0], settings)
