"""Baseline priors behind the frozen-prior interface: VPoser (latent N) and the GMM (no latent).

Importing this package registers the "vposer" and "gmm" kinds with `pose_prior.frozen_prior.load_prior`.
"""

from pose_prior.priors.gmm_prior import GMMPrior, save_gmm_prior
from pose_prior.priors.vposer_prior import VPoserPrior, save_vposer_prior

__all__ = ["GMMPrior", "VPoserPrior", "save_gmm_prior", "save_vposer_prior"]
