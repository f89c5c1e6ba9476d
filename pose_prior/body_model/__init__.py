"""Body models: SMPL / SMPL-H (licensed files) and the embedded open model, one batched forward pass."""

from pose_prior.body_model.loading import load_body_model
from pose_prior.body_model.model import BodyModel, BodyOutput

__all__ = ["BodyModel", "BodyOutput", "load_body_model"]
