"""No prior: the fit optimises the raw 63-d body pose, starting from the zero pose, with no prior term.

`fit_keypoints(None, ...)` uses it; it is the paper's "no prior" row of Table 3.
"""

from __future__ import annotations

import torch

from pose_prior.priors.base import PosePrior


class NoPrior(PosePrior):
    """The identity "prior" over the raw pose: nothing to sample, no penalty."""

    kind = "none"

    def describe(self) -> dict:
        return {"kind": "none", "latent": None, "latent_dim": self.latent_dim}

    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        return torch.zeros(count, self.latent_dim, dtype=self.dtype, device=self.device)
