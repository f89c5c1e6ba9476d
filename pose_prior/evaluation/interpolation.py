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


def evaluate_interpolation(prior: torch.nn.Module, body_model: torch.nn.Module, test_poses, num_pairs: int = 100,
                           steps: int = 11, seed: int = 0, invert_kwargs: dict | None = None,
                           device: torch.device | str = "cpu", batch_size: int = 32, rank: int = 0,
                           world: int = 1) -> InterpolationStats:
    """Eq. 6 statistics of `prior` on `num_pairs` seeded pairs of test bodies (N, 63).

    Both bodies of a pair are inverted with `prior.invert(pose, body_model, **invert_kwargs)`, the latents
    interpolated with the prior's own scheme (`prior.interpolate`, `steps` meshes including both
    endpoints, so n = steps - 1 transitions) and decoded; d_i is Eq. 5 between consecutive meshes.
    Pairs are processed `batch_size` at a time (inversion holds per-sample Jacobians). Under
    torch.distributed (`world` > 1) rank r handles pairs r, r + world, ... and every rank returns the
    statistics of all pairs in the original order (equal-shape all_gather of padded rows).
    """
    from pose_prior.coverage import pose_vertices, take_rows

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
        z = prior.invert(poses, body_model, **kwargs)  # (2p, dim)
        p = z.shape[0] // 2
        with torch.no_grad():
            path = prior.interpolate(z[:p], z[p:], steps)  # (p, S, dim)
            flat = path.reshape(p * steps, -1)
            if hasattr(prior, "vertices"):
                verts = prior.vertices(flat, body_model)
            else:
                verts = pose_vertices(body_model, prior.decode(flat))
            parts.append(interpolation_stats(verts.reshape(p, steps, -1, 3)))
    n = steps - 1
    rows = torch.cat([torch.cat([s.ratio[:, None], s.normalised, s.steps_mm, s.endpoint_mm[:, None]], dim=1).double()
                      for s in parts]) if parts else torch.zeros(0, 2 * n + 2, dtype=torch.float64, device=device)
    if world > 1:
        rows = _gather_pair_rows(rows, num_pairs, world)
    return InterpolationStats(ratio=rows[:, 0], normalised=rows[:, 1:1 + n], steps_mm=rows[:, 1 + n:1 + 2 * n],
                              endpoint_mm=rows[:, -1])


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
