"""The shape priors behind the prior interface (paper supplement D); file kinds "gan_beta", "gan_theta_beta".

- `GanBetaPrior` (GAN-beta, "shape-only"): `yields = "betas"`; `decode(z)` is the (n, 10) betas;
  `vertices(z, body_model)` the bodies in the zero pose with those betas. It has no pose: `decode_matrices`
  and `invert` (which takes a body pose) raise.
- `GanThetaBetaPrior` (GAN-theta-beta, entangled): `yields = "body_pose+betas"`. `decode(z)` /
  `decode_matrices(z)` are the POSE part, (n, 63) / (n, 21, 3, 3), so every pose consumer (fitting,
  inversion, pose coverage, interpolation, regression) uses it unchanged, as a pose prior with neutral shape
  (`vertices`, as the interface says); `decode_betas(z)` is the shape part (n, 10), `decode_both(z)` both
  from one generator pass, `body_vertices(z, body_model)` the bodies with their generated shape.
The file's kind-specific entry is GAN-S's: `"generator": {"class", "kwargs", "state_dict"}`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pose_prior.body_model.posing import as_vertices, takes_matrices
from pose_prior.priors.base import GeneratorPrior
from pose_prior.priors.file_format import malformed
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape.networks import PoseShapeGenerator, ShapeGenerator
from pose_prior.rotations import matrices_to_body_pose

GAN_BETA, GAN_THETA_BETA = "gan_beta", "gan_theta_beta"


def shaped_vertices(body_model: nn.Module, betas: torch.Tensor, rotmats: torch.Tensor | None = None) -> torch.Tensor:
    """(n, V, 3) vertices of bodies with `betas` (n, K) in the pose `rotmats` (n, 21, 3, 3), zero pose if None."""
    n = betas.shape[0]
    if rotmats is None:
        pose = betas.new_zeros(n, 63)
    else:
        pose = rotmats if takes_matrices(body_model) else matrices_to_body_pose(rotmats)
    return as_vertices(body_model(pose, betas=betas)).reshape(n, -1, 3)


class _ShapeLatentPrior(GeneratorPrior):
    """A frozen shape (or pose-and-shape) generator and its latent space."""

    @property
    def num_betas(self) -> int:
        return self.generator.num_betas


class GanBetaPrior(_ShapeLatentPrior):
    """GAN-beta: latent (n, latent_dim) -> betas (n, K)."""

    kind = GAN_BETA
    yields = "betas"

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, K) betas; differentiable in z."""
        return self.generator(z)

    def decode_betas(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("GAN-beta yields betas, not a body pose; pair it with a pose prior "
                                  "(pose_prior.priors.shape.pair.PoseShapePair)")

    def vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """(n, V, 3) bodies in the zero pose with the decoded betas."""
        return shaped_vertices(body_model, self.decode(z))

    body_vertices = vertices

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module, return_distance: bool = False,
               **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError("GAN-beta has no pose to invert")


class GanThetaBetaPrior(_ShapeLatentPrior):
    """GAN-theta-beta: one latent -> pose (decode, decode_matrices) and betas (decode_betas)."""

    kind = GAN_THETA_BETA
    yields = "body_pose+betas"

    @property
    def num_joints(self) -> int:
        return self.generator.num_joints

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 21, 3, 3) the pose part; differentiable in z."""
        return self.generator(z)

    def decode_betas(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, K) the shape part; differentiable in z."""
        return self.generator.betas(z)

    def decode_both(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, latent_dim) -> (n, 63) body pose, (n, K) betas from one generator pass."""
        rot, betas = self.generator.both(z)
        return matrices_to_body_pose(rot), betas

    def decode_matrices_and_betas(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, latent_dim) -> (n, 21, 3, 3), (n, K) from one generator pass; differentiable in z (fitting)."""
        return self.generator.both(z)

    def body_vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """(n, V, 3) bodies in the decoded pose WITH the decoded betas (zero orientation)."""
        rot, betas = self.generator.both(z)
        return shaped_vertices(body_model, betas, rot)


_CLASSES = {GAN_BETA: (GanBetaPrior, ShapeGenerator), GAN_THETA_BETA: (GanThetaBetaPrior, PoseShapeGenerator)}


def _load(kind: str, payload: dict, path: str) -> _ShapeLatentPrior:
    prior_cls, gen_cls = _CLASSES[kind]
    try:
        latent = make_latent(payload["latent"]["name"], int(payload["latent"]["dim"]))
        entry = payload["generator"]
        generator = gen_cls(**entry["kwargs"])
        generator.load_state_dict(entry["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise malformed(path, kind, err) from err
    return prior_cls(generator, latent, provenance=payload.get("provenance"))


def load_gan_beta_payload(payload: dict, path: str) -> GanBetaPrior:
    """The "gan_beta" kind's loader (`pose_prior.priors.file_format`)."""
    return _load(GAN_BETA, payload, path)


def load_gan_theta_beta_payload(payload: dict, path: str) -> GanThetaBetaPrior:
    """The "gan_theta_beta" kind's loader."""
    return _load(GAN_THETA_BETA, payload, path)
