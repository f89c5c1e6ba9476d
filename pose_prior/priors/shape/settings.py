"""Hyperparameters of the shape priors (paper supplement D), declared once.

`ShapeGanSettings` is the `model` section of the train-shape-gan config and the argument of
`ShapePriorModule`; the optimiser is GAN-S's (`GanOptimSettings`: Adam lr 2e-4, betas (0.5, 0.999)).
Defaults follow GAN-S's public config wherever the supplement says "as for poses" (spherical latent,
generator width, discriminator steps, per-joint and whole-pose weights); the shape heads' weights are
not published (1 each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pose_prior.priors.gan.settings import GanSettings
from pose_prior.priors.shape.losses import Groups
from pose_prior.priors.shape.networks import NUM_BODY_JOINTS, SHAPE_DISC_HIDDEN


@dataclass
class ShapeGanSettings:
    """What a shape GAN is: "beta" (GAN-beta, shape only) or "theta_beta" (GAN-theta-beta, entangled)."""

    model: Literal["beta", "theta_beta"] = "beta"
    latent: str = "S"  # the supplement's models all use the spherical latent
    latent_dim: int = GanSettings.latent_dim
    num_betas: int = 10
    gen_hidden: int = GanSettings.gen_hidden
    gen_dropout: float = GanSettings.gen_dropout
    leaky_slope: float = GanSettings.leaky_slope
    disc_joint_features: int = GanSettings.disc_joint_features  # theta_beta: GAN-S's pose discriminator
    disc_hidden: int = GanSettings.disc_hidden  # theta_beta: whole-pose and poseshape MLP width
    shape_disc_hidden: list[int] = field(default_factory=lambda: list(SHAPE_DISC_HIDDEN))  # HMR: 10, 5
    d_steps: int = GanSettings.d_steps
    joint_loss_weight: float = GanSettings.joint_loss_weight
    pose_loss_weight: float = GanSettings.pose_loss_weight
    shape_loss_weight: float = 1.0
    poseshape_loss_weight: float = 1.0


def loss_groups(s: ShapeGanSettings) -> Groups:
    """The discriminator's output columns in order, with their weights."""
    if s.model == "beta":
        return [("shape", 1, s.shape_loss_weight)]
    return [("joint", NUM_BODY_JOINTS, s.joint_loss_weight), ("pose", 1, s.pose_loss_weight),
            ("shape", 1, s.shape_loss_weight), ("poseshape", 1, s.poseshape_loss_weight)]
