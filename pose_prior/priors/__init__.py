"""Pose priors behind one interface (`Prior`): the GAN priors, VPoser, the GMM, and "none".

`load_prior(path)` reads a prior file of any registered kind; `register_prior_kind` adds a kind. Names
are resolved on first use, so loading one kind of file does not import the modules of the others.
"""

from __future__ import annotations

from pose_prior.lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
