"""Least-squares GAN losses over named groups of discriminator output columns, at the authors' scale.

The same rule as `pose_prior.priors.gan.losses` (the authors' `vanilla_gan.py`), generalised to any
heads: each column's squared error (d - label)^2 is weighted by its group's weight over the group's
number of columns, then averaged over the batch and ALL columns. With the groups (joint: 21 columns,
weight 21), (pose: 1, weight 1) it is exactly GAN-S's loss (a test checks). The shape models' groups:
- GAN-beta: (shape: 1, weight 1): plain LSGAN on HMR's one shape output;
- GAN-theta-beta: (joint: 21, 21), (pose: 1, 1), (shape: 1, 1), (poseshape: 1, 1), 24 columns; the
  authors' loss names `shape` and `poseshape` heads, their weights are not published: 1 each here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Groups = Sequence[tuple[str, int, float]]  # (name, number of columns, weight), in column order


def _column_weights(groups: Groups, like: torch.Tensor) -> torch.Tensor:
    """(C,) weight of each column: the group's weight over its column count."""
    return torch.cat([torch.full((n,), w / n, dtype=like.dtype, device=like.device) for _, n, w in groups])


def _parts(err: torch.Tensor, groups: Groups, suffix: str) -> dict[str, torch.Tensor]:
    """Unweighted mean squared error per group (for logging)."""
    out, start = {}, 0
    for name, n, _ in groups:
        out[f"{name}{suffix}"] = err[:, start:start + n].mean()
        start += n
    return out


def _check(d: torch.Tensor, groups: Groups) -> None:
    if d.dim() != 2 or d.shape[1] != sum(n for _, n, _ in groups):
        raise ValueError(f"discriminator output {tuple(d.shape)} does not match the groups {list(groups)}")


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, groups: Groups
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Real -> 1, fake -> 0: (fake term + real term, unweighted parts "<group>_real", "<group>_fake")."""
    _check(d_real, groups)
    _check(d_fake, groups)
    w = _column_weights(groups, d_real)
    e_real, e_fake = (d_real - 1.0).square(), d_fake.square()  # (B, C)
    total = (e_fake * w).mean() + (e_real * w).mean()
    return total, {**_parts(e_real.detach(), groups, "_real"), **_parts(e_fake.detach(), groups, "_fake")}


def generator_loss(d_fake: torch.Tensor, groups: Groups) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fake -> 1: (total, unweighted parts per group)."""
    _check(d_fake, groups)
    err = (d_fake - 1.0).square()
    return (err * _column_weights(groups, d_fake)).mean(), _parts(err.detach(), groups, "")
