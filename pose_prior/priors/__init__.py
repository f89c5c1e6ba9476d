"""Pose priors behind one interface (`Prior`): the GAN priors, VPoser, the GMM, and "none".

`load_prior(path)` reads a prior file of any registered kind; `register_prior_kind` adds a kind. Names
are resolved on first use, so loading one kind of file does not import the modules of the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Prior": "pose_prior.priors.base",
    "LatentPrior": "pose_prior.priors.base",
    "PosePrior": "pose_prior.priors.base",
    "GANPrior": "pose_prior.priors.gan.prior",
    "save_prior": "pose_prior.priors.gan.prior",
    "VPoserPrior": "pose_prior.priors.vposer.prior",
    "GMMPrior": "pose_prior.priors.gmm.prior",
    "NoPrior": "pose_prior.priors.none",
    "load_prior": "pose_prior.priors.file_format",
    "prior_from_payload": "pose_prior.priors.file_format",
    "prior_kinds": "pose_prior.priors.file_format",
    "register_prior_kind": "pose_prior.priors.file_format",
    "write_prior_file": "pose_prior.priors.file_format",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pose_prior.priors' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
