"""Interpolation smoothness in a prior's latent space (paper Sec. 4.2, Eq. 6, Fig. 5).

For a pair of bodies (M_0, M_n) inverted into the latent space and interpolated with the prior's own
scheme (SLERP for S, linear for U/N), d_i = D(M_i, M_{i+1}) (Eq. 5) for i = 0..n-1. The paper normalises
each sequence by the straight-line step D(M_0, M_n) / n, so that 1 is the (usually physically impossible)
minimum, and measures smoothness by the ratio max_i d_i / min_i d_i (Eq. 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pose_prior.metrics import mesh_distance


def consecutive_distances(vertices: torch.Tensor) -> torch.Tensor:
    """(P, S, V, 3) interpolated meshes -> (P, S-1) Eq. 5 distances between consecutive meshes."""
    P, S = vertices.shape[:2]
    a = vertices[:, :-1].reshape(P * (S - 1), *vertices.shape[2:])
    b = vertices[:, 1:].reshape(P * (S - 1), *vertices.shape[2:])
    return mesh_distance(a, b).reshape(P, S - 1)


def normalised_steps(steps: torch.Tensor, endpoint_distance: torch.Tensor) -> torch.Tensor:
    """(P, n) consecutive distances / (D(M_0, M_n) / n): 1 everywhere for a straight, even path."""
    n = steps.shape[1]
    return steps / (endpoint_distance[:, None] / n)


def smoothness_ratio(steps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(P, n) consecutive distances -> (P,) Eq. 6 ratio max_i d_i / min_i d_i."""
    return steps.max(dim=1).values / steps.min(dim=1).values.clamp_min(eps)


@dataclass
class InterpolationStats:
    ratio: torch.Tensor  # (P,) Eq. 6 per pair
    normalised: torch.Tensor  # (P, n) per-step distances / (D(M_0, M_n) / n)
    steps_mm: torch.Tensor  # (P, n) per-step distances in mm
    endpoint_mm: torch.Tensor  # (P,) D(M_0, M_n) in mm

    def summary(self) -> dict[str, float]:
        r = self.ratio.double()
        return {
            "ratio_mean": float(r.mean()),
            "ratio_std": float(r.std(unbiased=False)) if len(r) > 1 else 0.0,
            "ratio_median": float(r.median()),
            "pairs": int(len(r)),
            "steps": int(self.normalised.shape[1]),
        }

    def mean_curve(self) -> torch.Tensor:
        """(n,) the normalised step distance averaged over pairs (Fig. 5)."""
        return self.normalised.double().mean(dim=0)


def interpolation_stats(vertices: torch.Tensor, unit_to_mm: float = 1000.0) -> InterpolationStats:
    """(P, S, V, 3) interpolated meshes (endpoints included) -> Eq. 6 statistics."""
    steps = consecutive_distances(vertices)
    endpoint = mesh_distance(vertices[:, 0], vertices[:, -1])
    return InterpolationStats(
        ratio=smoothness_ratio(steps),
        normalised=normalised_steps(steps, endpoint),
        steps_mm=steps * unit_to_mm,
        endpoint_mm=endpoint * unit_to_mm,
    )
