"""The GMM baseline behind the frozen-prior interface. It has no latent space: its "latent" IS the 63-d
axis-angle body pose, so decode / project / invert are identities, sample draws poses from the mixture and
interpolation is linear in axis-angle. The prior penalty is SMPLify's max-mixture term.
File kind "gmm" (read by `pose_prior.frozen_prior.load_prior`)."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pose_prior.frozen_prior import FrozenPrior, cpu_state_dict, register_prior_loader, write_prior_file
from pose_prior.gmm import GaussianMixturePrior, fit_gmm, load_smplify_gmm
from pose_prior.latent import LatentSpace
from pose_prior.rotations import axis_angle_to_matrix

KIND = "gmm"


class GMMPoseSpace(LatentSpace):
    """The "latent space" of the GMM prior: body poses (dim 63); samples come from the mixture."""

    name = "pose"

    def __init__(self, gmm: GaussianMixturePrior) -> None:
        super().__init__(gmm.pose_dim)
        self._gmm = gmm

    def _sample(self, shape, generator, device, dtype) -> torch.Tensor:
        return self._gmm.sample(shape[0], generator=generator, dtype=dtype).to(device)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class PoseIdentityGenerator(nn.Module):
    """Adapter: the identity "generator" pose (n, 63) -> rotation matrices (n, 21, 3, 3); holds the GMM."""

    def __init__(self, gmm: GaussianMixturePrior) -> None:
        super().__init__()
        self.gmm = gmm
        self.latent_dim = gmm.pose_dim
        self.num_joints = gmm.pose_dim // 3

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return axis_angle_to_matrix(pose.reshape(pose.shape[0], self.num_joints, 3))


class GMMPrior(FrozenPrior):
    """Frozen GMM pose prior with the shared interface (latent = pose, latent_type "pose")."""

    def __init__(
        self, gmm: GaussianMixturePrior, provenance: dict | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__(PoseIdentityGenerator(gmm), GMMPoseSpace(gmm), provenance)
        # Carries the prior's working device and dtype (the GMM itself stays float64).
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype))

    @property
    def gmm(self) -> GaussianMixturePrior:
        return self.generator.gmm

    def _param(self) -> torch.Tensor:
        return self._anchor

    @classmethod
    def from_smplify(
        cls, path: str | os.PathLike, reduce: Literal["marginalise", "zero_pad"] = "marginalise"
    ) -> GMMPrior:
        """From SMPLify's gmm_08.pkl (69-d), reduced to the 63-d body pose (see `load_smplify_gmm`)."""
        return cls(load_smplify_gmm(path, reduce), {"source": os.fspath(path), "reduce": reduce})

    @classmethod
    def fit(cls, poses: np.ndarray | torch.Tensor, provenance: dict | None = None, **fit_kwargs: Any) -> GMMPrior:
        """Fit with scikit-learn EM on poses (N, 63) (`fit_gmm` keyword arguments)."""
        prov = {"fit": {k: v for k, v in fit_kwargs.items() if isinstance(v, (int, float, str, bool, type(None)))}}
        return cls(fit_gmm(poses, **fit_kwargs), {**prov, **dict(provenance or {})})

    # --- the shared interface (latent = pose) ----------------------------------------------------
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Identity: the GMM's "latent" is the (n, 63) axis-angle body pose."""
        return z

    def prior_penalty(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B,): SMPLify's max-mixture penalty (float64 inside, returned in z's dtype)."""
        return self.gmm.max_mixture_penalty(z)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B,): mixture log-density."""
        return self.gmm.log_prob(z)

    def mean_pose(self) -> torch.Tensor:
        """(63,): SMPLify's initial body pose sum_k w_k mu_k, in the prior's dtype."""
        return self.gmm.mean_pose().to(self._anchor)

    def invert(
        self, body_pose: torch.Tensor, body_model: nn.Module | None = None, return_distance: bool = False, **_: Any
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Identity: a pose is its own latent (exact, distance 0)."""
        z = body_pose.detach().clone().to(self._anchor)
        return (z, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)) if return_distance else z


def save_gmm_prior(
    path: str | os.PathLike, prior: GMMPrior | GaussianMixturePrior, provenance: dict | None = None
) -> None:
    """Write a "gmm" prior file atomically (tensors and plain values; torch.load(weights_only=True))."""
    gmm = prior.gmm if isinstance(prior, GMMPrior) else prior
    base = prior.provenance if isinstance(prior, GMMPrior) else {}
    write_prior_file(path, KIND, "pose", gmm.pose_dim, {"gmm": {"state_dict": cpu_state_dict(gmm)}},
                     base, provenance)


def load_gmm_payload(payload: dict, path: str, device: torch.device | str | None) -> GMMPrior:
    """PRIOR_LOADERS entry for kind "gmm"."""
    try:
        gmm = GaussianMixturePrior.from_state_dict(payload["gmm"]["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: malformed GMM prior file ({type(err).__name__}: {err})") from err
    prior = GMMPrior(gmm, provenance=payload.get("provenance"))
    return prior.to(device) if device is not None else prior


register_prior_loader(KIND, load_gmm_payload)
