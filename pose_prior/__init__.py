"""pose_prior: the plain-PyTorch core of the framework (no Lightning).

For a notebook::

    import pose_prior
    body = pose_prior.load_body_model("open")              # or a licensed SMPL / SMPL-H file
    prior = pose_prior.load_prior("outputs/runs/gan_s/prior.pt")
    z = prior.sample(8)                                    # (8, 32) latents
    poses = prior.decode(z)                                # (8, 63) axis-angle body poses
    fit = pose_prior.fit_keypoints(prior, body, keypoints, layout="spin24")

Names are resolved on first use, so `import pose_prior` stays light.
"""

from __future__ import annotations

from pose_prior.lazy import lazy_attributes

__version__ = "0.1.0"

_EXPORTS = {
    # body models
    "load_body_model": "pose_prior.body_model",
    "BodyModel": "pose_prior.body_model",
    "KeypointBody": "pose_prior.body_model.keypoint_body",
    "keypoint_map_for_body_model": "pose_prior.body_model.keypoints",
    # priors
    "Prior": "pose_prior.priors",
    "LatentPrior": "pose_prior.priors",
    "GANPrior": "pose_prior.priors",
    "VPoserPrior": "pose_prior.priors",
    "GMMPrior": "pose_prior.priors",
    "NoPrior": "pose_prior.priors",
    "load_prior": "pose_prior.priors",
    "register_prior_kind": "pose_prior.priors",
    "prior_kinds": "pose_prior.priors",
    "make_latent": "pose_prior.priors.latent",
    # fitting
    "fit_keypoints": "pose_prior.fitting",
    "FitSettings": "pose_prior.fitting",
    "FitResult": "pose_prior.fitting",
    "batched_lbfgs": "pose_prior.fitting",
    # evaluation
    "mesh_distance": "pose_prior.evaluation.distance",
    "mesh_distance_matrix": "pose_prior.evaluation.distance",
    "evaluate_coverage": "pose_prior.evaluation.coverage",
    "evaluate_interpolation": "pose_prior.evaluation.interpolation",
    "p_mpjpe": "pose_prior.evaluation.metrics3d",
}


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
