"""The adversarial prior's hyperparameters, declared once (authors' public ganS config).

`GanSettings` (networks, latent space, losses, discriminator steps) and `GanOptimSettings` (Adam) are the
`model` and `optim` sections of the train-gan config, the arguments of `AdversarialPriorModule`, and the
defaults of `PoseGenerator`, `PoseDiscriminator` and `make_optimizers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class GanSettings:
    """Generator / discriminator sizes, the latent space and the LSGAN loss weights."""

    latent: Literal["S", "U", "N"] = "S"  # spherical | uniform | normal
    latent_dim: int = 32
    gen_hidden: int = 512
    gen_dropout: float = 0.1
    leaky_slope: float = 0.2
    disc_joint_features: int = 32
    disc_hidden: int = 64  # authors' public config (hidden_poseall); HMR and their code default: 1024
    procedure: Literal["authors", "fresh"] = "authors"  # pose_prior.priors.gan.training.PROCEDURES
    d_steps: int = 10  # discriminator updates per generator update
    joint_loss_weight: float = 21.0
    pose_loss_weight: float = 1.0


@dataclass
class GanOptimSettings:
    """Adam for both networks (authors: lr 2e-4, betas (0.5, 0.999))."""

    lr: float = 2e-4
    d_lr: Optional[float] = None  # discriminator learning rate if different from lr
    beta1: float = 0.5
    beta2: float = 0.999
