"""Interpolation smoothness in a prior's latent space (paper Sec. 4.2, Eq. 6, Fig. 5).

For a pair of bodies (M_0, M_n) inverted into the latent space and interpolated with the prior's own
scheme (SLERP for S, linear for U/N), d_i = D(M_i, M_{i+1}) (Eq. 5) for i = 0..n-1. The paper normalises
each sequence by the straight-line step D(M_0, M_n) / n, so that 1 is the (usually physically impossible)
minimum, and measures smoothness by the ratio max_i d_i / min_i d_i (Eq. 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pose_prior.evaluation.distance import mesh_distance
from pose_prior.evaluation.statistics import summary_statistics
from pose_prior.priors.base import Prior


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


MIN_ENDPOINT_MM = 0.1  # endpoints decoded closer than this are one body: the pair has no path to measure


@dataclass
class InterpolationStats:
    """Per pair of one evaluation; `valid` marks the pairs the statistics and the curve are taken over."""

    ratio: torch.Tensor  # (P,) Eq. 6 per pair
    normalised: torch.Tensor  # (P, n) per-step distances / (D(M_0, M_n) / n)
    steps_mm: torch.Tensor  # (P, n) per-step distances in mm
    endpoint_mm: torch.Tensor  # (P,) D(M_0, M_n) in mm
    inversion_mm: torch.Tensor  # (P, 2) Eq. 5 from each decoded endpoint to the body it inverts (0: given meshes)
    degenerate: torch.Tensor  # (P,) bool: endpoints decode to one body, or a step of length 0
    inversion_failed: torch.Tensor  # (P,) bool: an endpoint's inversion error exceeds the configured bound
    endpoints: torch.Tensor | None = None  # (P, 2, dim) the inverted latents (to draw a pair's path again)

    @property
    def valid(self) -> torch.Tensor:
        return ~(self.degenerate | self.inversion_failed)

    def summary(self) -> dict[str, float | int | None]:
        """Eq. 6 ratio statistics over the valid pairs, the counts of excluded pairs, inversion errors."""
        valid = self.valid
        return {
            **summary_statistics(self.ratio[valid], prefix="ratio_"),
            "pairs": int(len(self.ratio)),
            "pairs_valid": int(valid.sum()),
            "excluded_degenerate": int(self.degenerate.sum()),
            "excluded_inversion": int((self.inversion_failed & ~self.degenerate).sum()),
            **summary_statistics(self.inversion_mm, prefix="inversion_", unit="_mm"),
            "steps": int(self.normalised.shape[1]),
        }

    def mean_curve(self) -> torch.Tensor:
        """(n,) the normalised step distance averaged over the valid pairs (Fig. 5); NaN with none valid."""
        return self.normalised[self.valid].double().mean(dim=0)


def interpolation_stats(vertices: torch.Tensor, inversion_mm: torch.Tensor | None = None,
                        max_inversion_mm: float | None = None, unit_to_mm: float = 1000.0) -> InterpolationStats:
    """(P, S, V, 3) interpolated meshes (endpoints included) -> Eq. 6 statistics; `inversion_mm` (P, 2)
    the endpoints' inversion errors, checked against `max_inversion_mm` (None: no bound)."""
    steps = consecutive_distances(vertices)
    endpoint = mesh_distance(vertices[:, 0], vertices[:, -1])
    endpoint_mm = endpoint * unit_to_mm
    inv = torch.zeros(len(steps), 2, dtype=steps.dtype, device=steps.device) if inversion_mm is None else inversion_mm
    degenerate = (endpoint_mm <= MIN_ENDPOINT_MM) | (steps.min(dim=1).values <= 0) | ~torch.isfinite(steps).all(1)
    failed = torch.zeros_like(degenerate) if max_inversion_mm is None else (inv > max_inversion_mm).any(1)
    return InterpolationStats(
        ratio=smoothness_ratio(steps),
        normalised=normalised_steps(steps, endpoint),
        steps_mm=steps * unit_to_mm,
        endpoint_mm=endpoint_mm,
        inversion_mm=inv.to(steps.dtype),
        degenerate=degenerate,
        inversion_failed=failed,
    )


# --- the evaluation of a prior (Sec. 4.2): test pairs -> inversion -> interpolation -> Eq. 6 ---------
def interpolation_pairs(num_rows: int, num_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded row ids (start (P,), end (P,)) of `num_pairs` pairs of distinct rows of a split."""
    if num_rows < 2:
        raise ValueError(f"interpolation needs a split with at least 2 bodies, got {num_rows}")
    rng = np.random.default_rng(seed)
    start = rng.integers(0, num_rows, size=num_pairs)
    end = rng.integers(0, num_rows - 1, size=num_pairs)
    end = end + (end >= start)  # never the start row itself
    return start.astype(np.int64), end.astype(np.int64)


def evaluate_interpolation(prior: Prior, body_model: torch.nn.Module, test_poses, num_pairs: int = 100,
                           steps: int = 11, seed: int = 0, invert_kwargs: dict | None = None,
                           device: torch.device | str = "cpu", batch_size: int = 32, rank: int = 0,
                           world: int = 1, max_inversion_mm: float | None = None) -> InterpolationStats:
    """Eq. 6 statistics of `prior` on `num_pairs` seeded pairs of test bodies (N, 63).

    Both bodies of a pair are inverted with `prior.invert(pose, body_model, **invert_kwargs)`, the latents
    interpolated with the prior's own scheme (`prior.interpolate`, `steps` meshes including both
    endpoints, so n = steps - 1 transitions) and decoded; d_i is Eq. 5 between consecutive meshes.
    Pairs are processed `batch_size` at a time (inversion holds per-sample Jacobians). Under
    torch.distributed (`world` > 1) rank r handles pairs r, r + world, ... and every rank returns the
    statistics of all pairs in the original order (equal-shape all_gather of padded rows). Each endpoint's
    inversion error (Eq. 5 to its target) is recorded; pairs whose endpoints decode to one body, or whose
    inversion error exceeds `max_inversion_mm`, are counted and left out of the statistics and the curve.
    """
    from pose_prior.rows import take_rows

    start, end = interpolation_pairs(len(test_poses), num_pairs, seed)
    mine = np.arange(rank, num_pairs, world)
    start, end = start[mine], end[mine]
    prior = prior.to(device)
    body_model = body_model.to(device)
    kwargs = dict(invert_kwargs or {})
    parts: list[InterpolationStats] = []
    for i in range(0, len(mine), batch_size):
        poses = torch.cat([take_rows(test_poses, start[i:i + batch_size]),
                           take_rows(test_poses, end[i:i + batch_size])]).to(device)  # (2p, 63)
        z, err = prior.invert(poses, body_model, return_distance=True, **kwargs)  # (2p, dim), (2p,)
        p = z.shape[0] // 2
        with torch.no_grad():
            path = prior.interpolate(z[:p], z[p:], steps)  # (p, S, dim)
            verts = prior.vertices(path.reshape(p * steps, -1), body_model)
            inversion_mm = torch.stack([err[:p], err[p:]], dim=1) * 1000.0  # (p, 2)
            s = interpolation_stats(verts.reshape(p, steps, -1, 3), inversion_mm, max_inversion_mm)
            s.endpoints = torch.stack([z[:p], z[p:]], dim=1)  # (p, 2, dim)
            parts.append(s)
    n, dim = steps - 1, prior.latent_dim
    # one row per pair: ratio, normalised (n), steps (n), endpoint, inversion (2), degenerate, failed, latents
    width = 2 * n + 6 + 2 * dim
    rows = torch.cat([torch.cat([s.ratio[:, None], s.normalised, s.steps_mm, s.endpoint_mm[:, None], s.inversion_mm,
                                 s.degenerate[:, None], s.inversion_failed[:, None], s.endpoints.flatten(1)],
                                dim=1).double()
                      for s in parts]) if parts else torch.zeros(0, width, dtype=torch.float64, device=device)
    if world > 1:
        rows = _gather_pair_rows(rows, num_pairs, world)
    flags = rows[:, 4 + 2 * n:6 + 2 * n]
    return InterpolationStats(ratio=rows[:, 0], normalised=rows[:, 1:1 + n], steps_mm=rows[:, 1 + n:1 + 2 * n],
                              endpoint_mm=rows[:, 1 + 2 * n], inversion_mm=rows[:, 2 + 2 * n:4 + 2 * n],
                              degenerate=flags[:, 0] > 0, inversion_failed=flags[:, 1] > 0,
                              endpoints=rows[:, 6 + 2 * n:].reshape(-1, 2, dim).to(prior.dtype))


def _gather_pair_rows(rows: torch.Tensor, num_pairs: int, world: int) -> torch.Tensor:
    """All ranks' rows (rank r holds pairs r, r + world, ...) back in pair order; equal shapes (NaN padding)."""
    import torch.distributed as dist

    per_rank = -(-num_pairs // world)
    padded = torch.full((per_rank, rows.shape[1]), float("nan"), dtype=rows.dtype, device=rows.device)
    padded[:rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    stacked = torch.stack(gathered, dim=1).reshape(per_rank * world, -1)  # row j*world + r = pair j*world + r
    return stacked[:num_pairs]
