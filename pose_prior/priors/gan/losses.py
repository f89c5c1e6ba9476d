"""Least-squares GAN losses over the discriminator's J + 1 outputs (J per-joint scores, one whole-pose score),
at the authors' scale.

Targets 1 (real) / 0 (fake). As the authors' code computes it (their `vanilla_gan.py`): each output
column's squared error (d - label)^2 is multiplied by its term's weight divided by the term's number of
columns (per-joint: joint_weight / J, whole-pose: pose_weight / 1), then averaged over the batch and all
J + 1 columns; the discriminator's loss is the fake term plus the real term. With the authors' public
weights (21, 1) and J = 21 that is (sum_j e_j + e_pose) / 22 per sample, so logged values compare with
their logs. (A version of this code before the authors' procedure became the default logged 22 times
that: same direction, but through Adam's epsilon the weights drift apart.)
"""

from __future__ import annotations

import torch


def split_logits(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, J + 1) discriminator output -> per-joint logits (B, J), whole-pose logits (B,)."""
    return d[:, :-1], d[:, -1]


def _weighted(joint: torch.Tensor, pose: torch.Tensor, num_joints: int, joint_weight: float,
              pose_weight: float) -> torch.Tensor:
    """Column-weighted mean over batch and J + 1 columns, from the per-term means over the batch (and joints)."""
    # mean_{b, c} w_c e_bc with w = joint_weight / J on J columns, pose_weight on one:
    # (J * (joint_weight / J) * mean_{b,j} e + pose_weight * mean_b e_pose) / (J + 1)
    return (joint_weight * joint + pose_weight * pose) / (num_joints + 1)


def discriminator_loss(
    d_real: torch.Tensor, d_fake: torch.Tensor, joint_weight: float, pose_weight: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LSGAN discriminator loss: real -> 1, fake -> 0. Returns (total, unweighted mean parts)."""
    jr, pr = split_logits(d_real)
    jf, pf = split_logits(d_fake)
    parts = {
        "joint_real": (jr - 1.0).pow(2).mean(),
        "pose_real": (pr - 1.0).pow(2).mean(),
        "joint_fake": jf.pow(2).mean(),
        "pose_fake": pf.pow(2).mean(),
    }
    J = jr.shape[1]
    total = (_weighted(parts["joint_fake"], parts["pose_fake"], J, joint_weight, pose_weight)
             + _weighted(parts["joint_real"], parts["pose_real"], J, joint_weight, pose_weight))
    return total, parts


def generator_loss(
    d_fake: torch.Tensor, joint_weight: float, pose_weight: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LSGAN generator loss: fake -> 1. Returns (total, unweighted mean parts)."""
    jf, pf = split_logits(d_fake)
    parts = {"joint": (jf - 1.0).pow(2).mean(), "pose": (pf - 1.0).pow(2).mean()}
    return _weighted(parts["joint"], parts["pose"], jf.shape[1], joint_weight, pose_weight), parts
