"""Dataset coverage of a prior (paper Sec. 4.1, Table 1, Fig. 2): recall and precision under Eq. 5.

Recall: for `num_references` bodies drawn (seeded) from a split, the Eq. 5 distance to the nearest of
`num_generated` generated bodies. Precision: for `num_precision` generated bodies, the distance to the
nearest body of the split (all of it, or a seeded subsample of `precision_database` rows). Bodies have
neutral shape and zero global orientation; distances are reported in mm.

Both searches stream (`pose_prior.evaluation.nearest.StreamingNearestMesh`): only one chunk of bodies is held at a
time, so memory does not grow with `num_generated` or the split size. Work is cut into chunks whose
content depends only on (seed, chunk id), never on the process count: generated chunk c holds global
indices c*chunk_size ..., drawn from a generator seeded by (seed, c). Under torch.distributed rank r
takes chunks c = r, r + world, ... (disjoint global indices, each rank its own seeded share), and the
per-reference (min distance, argmin) states are min-reduced across ranks (`all_reduce_nearest`: a MIN on
distances, then a MIN on the indices of the ranks holding the minimum, i.e. ties -> lowest global index).
So the result of W processes equals the single-process result exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pose_prior.body_model.posing import as_vertices
from pose_prior.evaluation.nearest import StreamingNearestMesh, all_reduce_nearest
from pose_prior.evaluation.statistics import summary_statistics
from pose_prior.priors.base import Prior
from pose_prior.progress import Progress
from pose_prior.rows import sample_rows, take_rows

MM_PER_M = 1000.0
GENERATED_STREAM, PRECISION_STREAM = 0, 1  # independent seed streams for recall and precision samples


# --- seeded selection and chunking ------------------------------------------------------------------
def chunk_seed(seed: int, stream: int, chunk_id: int) -> int:
    """A 63-bit seed for one chunk, a function of (seed, stream, chunk id) only."""
    state = np.random.SeedSequence([int(seed), int(stream), int(chunk_id)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def rank_chunks(total: int, chunk_size: int, rank: int = 0, world: int = 1) -> Iterator[tuple[int, int, int]]:
    """(chunk id, global offset, size) of the chunks rank `rank` of `world` processes handles (round robin)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    num_chunks = -(-total // chunk_size)
    for c in range(rank, num_chunks, world):
        offset = c * chunk_size
        yield c, offset, min(chunk_size, total - offset)


# --- bodies -------------------------------------------------------------------------------------
@torch.no_grad()
def pose_vertices(body_model: nn.Module, body_pose: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(N, 63) body poses -> (N, V, 3) vertices in metres (neutral shape, zero orientation), chunked."""
    return torch.cat([as_vertices(body_model(p)).reshape(p.shape[0], -1, 3) for p in body_pose.split(chunk)])


@torch.no_grad()
def generate_bodies(prior: Prior, body_model: nn.Module, n: int, seed: int, device: torch.device | str,
                    return_poses: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """n bodies (n, V, 3) from the prior, latents drawn from a CPU generator seeded with `seed`."""
    z = prior.sample(n, generator=torch.Generator().manual_seed(seed)).to(device)
    vertices = prior.vertices(z, body_model).reshape(n, -1, 3)
    return (vertices, prior.decode(z)) if return_poses else vertices


# --- results ------------------------------------------------------------------------------------
def distance_stats(distance_mm: torch.Tensor | np.ndarray) -> dict[str, float]:
    """mean_mm, variance_mm2, std_mm, median_mm (the true median), count: float64, numpy's definitions."""
    return summary_statistics(distance_mm, unit="_mm")


@dataclass
class NearestResult:
    """Per query: Eq. 5 distance to its nearest neighbour (mm, float64) and that neighbour's index."""

    distance_mm: torch.Tensor  # (Q,) float64
    index: torch.Tensor  # (Q,) int64: global generated index (recall) or split row id (precision)

    def stats(self) -> dict[str, float]:
        return distance_stats(self.distance_mm)


@dataclass
class CoverageResult:
    """Recall and precision per split, the rows and poses used, and the sizes."""

    recall: dict[str, NearestResult]
    precision: dict[str, NearestResult]
    reference_rows: dict[str, np.ndarray]  # split -> sorted row ids of the recall references
    reference_poses: dict[str, torch.Tensor]  # split -> (R, 63) the recall references' poses
    generated_poses: torch.Tensor  # (Q, 63) the precision samples' poses (for the t-SNE plot)
    sizes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """{split: {"recall": stats, "precision": stats, "num_references", "database_size"}} in mm."""
        out: dict[str, Any] = {}
        for split in self.recall:
            out[split] = {
                "recall": self.recall[split].stats(),
                "precision": self.precision[split].stats(),
                "num_references": int(len(self.reference_rows[split])),
                "database_size": int(self.sizes["database_size"][split]),
            }
        return out


# --- the evaluation -----------------------------------------------------------------------------
def farthest_generated(result: CoverageResult, split: str = "train", count: int = 10
                       ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Paper Fig. 4: the `count` precision samples farthest (Eq. 5) from `split` -> their poses (k, 63), the
    row ids of their nearest `split` bodies (k,) and the distances (k,) in mm, farthest first."""
    near = result.precision[split]
    order = torch.argsort(near.distance_mm, descending=True)[:count]
    return result.generated_poses[order], near.index[order].cpu().numpy(), near.distance_mm[order]


def _reduce(state: StreamingNearestMesh, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    dist, index = state.compute()
    if world > 1:
        dist, index = all_reduce_nearest(dist, index)
    return dist, index


@torch.no_grad()
def evaluate_coverage(
    prior: Prior,
    body_model: nn.Module,
    train_poses: Any,
    test_poses: Any | None = None,
    num_generated: int = 6_000_000,
    num_references: int = 10_000,
    num_precision: int = 10_000,
    chunk_size: int = 4096,
    seed: int = 0,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world: int = 1,
    precision_database: int | None = None,
    nearest_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> CoverageResult:
    """Recall and precision (Eq. 5, mm) of `prior` against the train (and test) poses (N, 63).

    Every process of a torch.distributed group calls this with its `rank` and `world`; all get the
    same (reduced) result, equal to the single-process one. `precision_database` caps the rows of each
    split searched for precision (seeded subsample; None = the whole split). `progress`: rank 0 prints
    bodies done, rate and ETA to stderr every few seconds (the paper's size runs for hours).
    """
    if world > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(f"evaluate_coverage(world={world}) needs an initialised torch.distributed group")
    if min(num_generated, num_references, num_precision) <= 0:
        raise ValueError("num_generated, num_references and num_precision must be positive, got "
                         f"{num_generated}, {num_references}, {num_precision}")
    t0 = time.perf_counter()
    device = torch.device(device)
    prior = prior.to(device)
    body_model = body_model.to(device)
    nearest_kwargs = dict(nearest_kwargs or {})
    splits = {"train": train_poses, **({"test": test_poses} if test_poses is not None else {})}

    # Recall: references from each split, generated bodies streamed in rank-owned chunks.
    rows, ref_poses, recall_state = {}, {}, {}
    for split, source in splits.items():
        rows[split] = sample_rows(len(source), num_references, seed)
        ref_poses[split] = take_rows(source, rows[split])
        ref_vertices = pose_vertices(body_model, ref_poses[split].to(device), chunk_size)
        recall_state[split] = StreamingNearestMesh(ref_vertices, **nearest_kwargs)
        del ref_vertices
    share = f" (rank 0's share of {world})" if world > 1 else ""  # progress counts this rank's chunks only
    my_chunks = list(rank_chunks(num_generated, chunk_size, rank, world))
    with Progress(f"coverage recall{share}", sum(n for _, _, n in my_chunks), unit="bodies", enabled=progress,
                  rank=rank) as bar:
        for chunk_id, offset, n in my_chunks:
            bodies = generate_bodies(prior, body_model, n, chunk_seed(seed, GENERATED_STREAM, chunk_id), device)
            for state in recall_state.values():
                state.update(bodies, offset)
            del bodies
            bar.update(n)

    # Precision: the same generated samples on every rank; each rank streams its chunks of the split.
    parts = [generate_bodies(prior, body_model, n, chunk_seed(seed, PRECISION_STREAM, c), device, return_poses=True)
             for c, _, n in rank_chunks(num_precision, chunk_size)]
    query_vertices = torch.cat([v for v, _ in parts])  # (Q, V, 3)
    generated_poses = torch.cat([p for _, p in parts]).float().cpu()  # (Q, 63)
    del parts
    precision_state = {}
    database_rows = {split: sample_rows(len(source), precision_database, seed + 1) for split, source in splits.items()}
    my_rows = sum(n for rows_ in database_rows.values() for _, _, n in rank_chunks(len(rows_), chunk_size, rank, world))
    with Progress(f"coverage precision{share}", my_rows, unit="bodies", enabled=progress, rank=rank) as bar:
        for split, source in splits.items():
            state = StreamingNearestMesh(query_vertices, **nearest_kwargs)
            for _, offset, n in rank_chunks(len(database_rows[split]), chunk_size, rank, world):
                poses = take_rows(source, database_rows[split][offset:offset + n]).to(device)
                state.update(pose_vertices(body_model, poses, chunk_size), offset)
                bar.update(n)
            precision_state[split] = state
    del query_vertices

    recall, precision = {}, {}
    for split in splits:
        dist, index = _reduce(recall_state[split], world)
        recall[split] = NearestResult(dist.double().cpu() * MM_PER_M, index.cpu())
        dist, index = _reduce(precision_state[split], world)
        row_ids = torch.from_numpy(database_rows[split])[index.cpu()]  # database position -> split row id
        precision[split] = NearestResult(dist.double().cpu() * MM_PER_M, row_ids)
    sizes = {
        "num_generated": int(num_generated),
        "num_references": {s: int(len(r)) for s, r in rows.items()},
        "num_precision": int(num_precision),
        "database_size": {s: int(len(r)) for s, r in database_rows.items()},
        "split_rows": {s: int(len(src)) for s, src in splits.items()},
        "chunk_size": int(chunk_size),
        "seed": int(seed),
        "world_size": int(world),
    }
    return CoverageResult(recall, precision, rows, {s: p.cpu() for s, p in ref_poses.items()}, generated_poses,
                          sizes, time.perf_counter() - t0)
