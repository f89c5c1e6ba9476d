"""The GMM baseline behind the prior interface. It has no latent space: its "latent" IS the 63-d axis-angle
body pose, so decode, project and invert are identities, sampling draws poses from the mixture and
interpolation is linear in axis-angle; a fit starts from SMPLify's mixture mean and adds SMPLify's
max-mixture penalty. File kind "gmm": `"gmm": {"state_dict": {...}}` in the envelope."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from pose_prior.priors.base import PosePrior
from pose_prior.priors.file_format import cpu_state_dict, malformed
from pose_prior.priors.gmm.model import GaussianMixturePrior, fit_gmm, load_smplify_gmm

if TYPE_CHECKING:  # pragma: no cover
    from pose_prior.fitting.keypoint_fit import FitSettings

KIND = "gmm"


class GMMPrior(PosePrior):
    """Frozen GMM pose prior (the GMM itself computes in float64)."""

    kind = KIND

    def __init__(self, gmm: GaussianMixturePrior, provenance: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(provenance, dtype)
        self.gmm = gmm
        self.freeze()

    @property
    def latent_dim(self) -> int:
        return self.gmm.pose_dim

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

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n poses (n, 63) drawn from the mixture."""
        return self.gmm.sample(n, generator=generator, dtype=self.dtype).to(self.device)

    def prior_penalty(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B,): SMPLify's max-mixture penalty (float64 inside, returned in z's dtype)."""
        return self.gmm.max_mixture_penalty(z)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B,): mixture log-density."""
        return self.gmm.log_prob(z)

    def mean_pose(self) -> torch.Tensor:
        """(63,): SMPLify's initial body pose sum_k w_k mu_k, in the prior's dtype."""
        return self.gmm.mean_pose().to(self._anchor)

    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        """SMPLify's mean pose, then `count - 1` poses sampled with `seed`."""
        mean = self.mean_pose()[None]
        if count == 1:
            return mean
        return torch.cat([mean, self.sample(count - 1, generator=torch.Generator().manual_seed(seed))])

    def fit_penalty(self, z: torch.Tensor, settings: FitSettings) -> torch.Tensor | None:
        """gmm_weight^2 x SMPLify's max-mixture penalty (SPIN's final weight by default)."""
        if settings.gmm_weight > 0:
            return settings.gmm_weight**2 * self.prior_penalty(z).to(z.dtype)
        return None

    def file_entries(self) -> dict:
        return {"gmm": {"state_dict": cpu_state_dict(self.gmm)}}


def load_gmm_payload(payload: dict, path: str) -> GMMPrior:
    """The "gmm" kind's loader (`pose_prior.priors.file_format`)."""
    try:
        gmm = GaussianMixturePrior.from_state_dict(payload["gmm"]["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise malformed(path, "GMM", err) from err
    return GMMPrior(gmm, provenance=payload.get("provenance"))
