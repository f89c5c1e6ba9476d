"""Evaluation of the shape priors (paper supplement D) beside SMPL's own PCA prior, betas ~ N(0, I).

A shape "source" is what a row of the comparison draws bodies from:
- `normal`: betas ~ N(0, I), the unbounded baseline (no pose of its own);
- a GAN-beta prior (`yields == "betas"`): betas only;
- a prior that yields a pose and betas (GAN-theta-beta, the disentangled pair `PoseShapePair`): both,
  from one latent each body (`decode_both`).

Metrics, per source:
- coverage in the zero pose (`evaluate_shape_coverage`): recall / precision under Eq. 5, mm;
- coverage of posed bodies (pose-and-shape sources, and `normal` given a pose source to borrow poses
  from): the reference bodies are test poses each with an independently drawn test shape (the way the
  real pairs are made for training, `datamodules.shapes.PoseShapeDataModule`);
- interpolation smoothness (Eq. 6 through `pose_prior.evaluation.interpolation.interpolation_stats`): the
  paper's supp. Fig. 10 interpolates between RANDOM points of the input space, so the pairs here are seeded
  latent samples, interpolated with the prior's own scheme (SLERP on the sphere) and decoded; there is no
  inversion (GAN-beta has no pose to invert). For `normal` the path is the straight line between two
  N(0, I) draws: in the zero pose a body's vertices are affine in its betas, so that path's steps are all
  equal and its ratio is 1 up to rounding (a check of the machinery, not a finding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pose_prior.evaluation.interpolation import InterpolationStats, interpolation_stats
from pose_prior.evaluation.shape_coverage import normal_betas, shape_vertices

NORMAL = "normal"


@dataclass
class ShapeDraw:
    """Bodies drawn from one source: betas (n, K) and, for a pose-and-shape source, body poses (n, 63)."""

    betas: torch.Tensor
    body_pose: torch.Tensor | None = None


def is_posed(prior: nn.Module | None) -> bool:
    """True for a source that yields a pose and betas (GAN-theta-beta, the pair)."""
    return prior is not None and getattr(prior, "yields", None) == "body_pose+betas"


def check_shape_prior(prior: nn.Module, what: str) -> None:
    """A shape prior yields "betas" or "body_pose+betas"; anything else is the caller's mistake."""
    if getattr(prior, "yields", None) not in ("betas", "body_pose+betas"):
        raise ValueError(f"{what}: a shape prior yields betas (GAN-beta) or a pose and betas (GAN-theta-beta, "
                         f"a pose prior + GAN-beta pair), this one yields {getattr(prior, 'yields', None)!r}")


@torch.no_grad()
def decode_draw(prior: nn.Module, z: torch.Tensor, chunk: int = 4096) -> ShapeDraw:
    """Latents (n, dim) -> the bodies they decode to (CPU, float32)."""
    betas, poses = [], []
    for part in z.split(chunk):
        if is_posed(prior):
            pose, b = prior.decode_both(part)
            poses.append(pose.detach().float().cpu())
        else:
            b = prior.decode(part)
        betas.append(b.detach().float().cpu())
    return ShapeDraw(torch.cat(betas), torch.cat(poses) if poses else None)


def draw_bodies(prior: nn.Module | None, n: int, seed: int, num_betas: int = 10) -> ShapeDraw:
    """`n` bodies of a source: the prior's (latents from a CPU generator seeded by `seed`), or N(0, I)
    betas (seeded the same way) when `prior` is None."""
    if prior is None:
        return ShapeDraw(normal_betas(n, num_betas, seed))
    z = prior.sample(n, generator=torch.Generator().manual_seed(seed))
    return decode_draw(prior, z)


def latent_paths(prior: nn.Module, num_pairs: int, steps: int, seed: int) -> torch.Tensor:
    """(P, S, dim) paths between seeded random latent pairs, with the prior's own interpolation."""
    g = torch.Generator().manual_seed(seed)
    z0, z1 = prior.sample(num_pairs, generator=g), prior.sample(num_pairs, generator=g)
    return prior.interpolate(z0, z1, steps)


def normal_paths(num_pairs: int, steps: int, seed: int, num_betas: int = 10) -> torch.Tensor:
    """(P, S, K) straight lines between seeded pairs of N(0, I) betas (SMPL's PCA space is linear)."""
    g = torch.Generator().manual_seed(seed)
    b0, b1 = torch.randn(num_pairs, num_betas, generator=g), torch.randn(num_pairs, num_betas, generator=g)
    t = torch.linspace(0.0, 1.0, steps)[None, :, None]
    return (1 - t) * b0[:, None] + t * b1[:, None]


@torch.no_grad()
def interpolation_bodies(prior: nn.Module | None, body_model: nn.Module, num_pairs: int, steps: int, seed: int,
                         num_betas: int = 10) -> tuple[torch.Tensor, ShapeDraw]:
    """(P, S, V, 3) bodies along seeded random paths of a source (posed for a pose-and-shape source), and
    the decoded draw (P * S rows, path-major)."""
    if prior is None:
        draw = ShapeDraw(normal_paths(num_pairs, steps, seed, num_betas).reshape(num_pairs * steps, -1))
    else:
        path = latent_paths(prior, num_pairs, steps, seed)
        draw = decode_draw(prior, path.reshape(num_pairs * steps, -1))
    verts = shape_vertices(body_model, draw.betas, body_pose=draw.body_pose)
    return verts.reshape(num_pairs, steps, *verts.shape[1:]), draw


def shape_interpolation(prior: nn.Module | None, body_model: nn.Module, num_pairs: int = 100, steps: int = 11,
                        seed: int = 0, num_betas: int = 10) -> InterpolationStats:
    """Eq. 6 statistics of a source on seeded random pairs (see the module docstring)."""
    verts, _ = interpolation_bodies(prior, body_model, num_pairs, steps, seed, num_betas)
    return interpolation_stats(verts.double())
