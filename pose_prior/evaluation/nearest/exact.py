"""Bound-and-re-rank: the exact Eq. 5 nearest neighbour of each query among database bodies.

For each query q the current best distance U_q (a running minimum, tightened by the exact distances of
a FAISS L2 shortlist) is an upper bound on its nearest-neighbour distance. A database body x can only be
(or tie with) the nearest neighbour if every valid lower bound LB(q, x) <= U_q. Pairs are filtered by a
cascade of coarse bounds D_G (bounds.py): the coarsest for all pairs (G/V of the cost of Eq. 5), finer
ones for the survivors, and the rest are re-ranked with the exact Eq. 5, nearest bound first. Nothing
that could be the nearest neighbour is discarded, so the result equals brute force: a certificate, not a
large-enough-k hope. Ties go to the lowest global index.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pose_prior.evaluation.distance import paired_mesh_distance
from pose_prior.evaluation.nearest.bounds import (
    VertexGroups,
    centroids_of,
    coarse_distance_matrix,
    group_vertices,
    paired_coarse_distance,
)
from pose_prior.evaluation.nearest.faiss_index import FlatL2Shortlist

NO_INDEX = torch.iinfo(torch.long).max  # index of "no neighbour yet": loses every tie
DEFAULT_LEVELS = (8, 32, 128)  # vertex groups per coarse level, coarsest first


def _sample_rows(bodies: torch.Tensor, count: int) -> torch.Tensor:
    """Up to `count` evenly spaced rows (deterministic)."""
    step = max(1, bodies.shape[0] // count)
    return bodies[::step][:count]


class CoarseLevels:
    """The vertex partitions of the bound cascade, coarsest first, and the FAISS representation."""

    def __init__(self, sample_bodies: torch.Tensor, sizes: tuple[int, ...] = DEFAULT_LEVELS) -> None:
        if not sizes:
            raise ValueError("CoarseLevels: need at least one level size")
        sample = _sample_rows(sample_bodies, 64)
        self.levels: list[VertexGroups] = [group_vertices(sample, g) for g in sizes]
        self.centre = self.levels[-1].centroids(sample.double()).mean(0).float()  # (G, 3) for FAISS
        self.averaging = torch.cat([g.averaging for g in self.levels])  # (sum G, V): all levels in one GEMM
        self.sizes = [g.num_groups for g in self.levels]

    @property
    def num_vertices(self) -> int:
        return self.levels[0].labels.shape[0]

    def shortlist_vectors(self, finest: torch.Tensor) -> torch.Tensor:
        """(N, 3G) vectors whose L2 distance is the L2 distance of the size-weighted finest coarse mesh."""
        w = self.levels[-1].weights.to(finest).sqrt()[:, None]
        return ((finest - self.centre.to(finest)) * w).flatten(1).float()


@dataclass
class PreparedBodies:
    """Bodies with their centroids at every coarse level."""

    vertices: torch.Tensor  # (N, V, 3)
    centroids: list  # per level (N, G_l, 3)

    def __len__(self) -> int:
        return self.vertices.shape[0]

    def rows(self, sl: slice) -> PreparedBodies:
        return PreparedBodies(self.vertices[sl], [c[sl] for c in self.centroids])


def prepare_bodies(vertices: torch.Tensor, levels: CoarseLevels, dtype: torch.dtype) -> PreparedBodies:
    """Centroids per level of bodies (N, V, 3), in `dtype`."""
    if vertices.dim() != 3 or vertices.shape[1:] != (levels.num_vertices, 3):
        raise ValueError(f"expected bodies of shape (N, {levels.num_vertices}, 3), got {tuple(vertices.shape)}")
    centroids = centroids_of(vertices.to(dtype), levels.averaging)  # (N, sum G, 3)
    return PreparedBodies(vertices, [c.contiguous() for c in centroids.split(levels.sizes, dim=1)])


@dataclass
class SearchStats:
    """Pair counts (cumulative): all pairs, shortlisted, surviving each bound level, exactly re-ranked."""

    pairs: int = 0
    shortlisted: int = 0
    survivors: tuple = ()
    exact: int = 0

    def add_survivors(self, level: int, count: int) -> None:
        s = list(self.survivors) + [0] * (level + 1 - len(self.survivors))
        s[level] += count
        self.survivors = tuple(s)

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "shortlisted": self.shortlisted, "survivors_per_level": self.survivors,
                "exact": self.exact}


def update_best(best_dist: torch.Tensor, best_index: torch.Tensor, query: torch.Tensor,
                candidate: torch.Tensor, dist: torch.Tensor) -> None:
    """In place: best[q] <- min over pairs (q, candidate, dist); ties -> lowest candidate index."""
    if query.numel() == 0:
        return
    num = best_dist.shape[0]
    dist = dist.to(best_dist.dtype)
    m = torch.full((num,), float("inf"), dtype=best_dist.dtype, device=best_dist.device)
    m.scatter_reduce_(0, query, dist, reduce="amin")
    ci = torch.full((num,), NO_INDEX, dtype=torch.long, device=best_dist.device)
    ci.scatter_reduce_(0, query, torch.where(dist == m[query], candidate, NO_INDEX), reduce="amin")
    merge_nearest_(best_dist, best_index, m, ci)


def merge_nearest_(best_dist: torch.Tensor, best_index: torch.Tensor, other_dist: torch.Tensor,
                   other_index: torch.Tensor) -> None:
    """In place elementwise merge of two (dist, index) results: smaller distance, ties -> lower index."""
    better = (other_dist < best_dist) | ((other_dist == best_dist) & (other_index < best_index))
    best_dist.copy_(torch.where(better, other_dist, best_dist))
    best_index.copy_(torch.where(better, other_index, best_index))


def improve_nearest(queries: PreparedBodies, database: PreparedBodies, best_dist: torch.Tensor,
                    best_index: torch.Tensor, levels: CoarseLevels, index_offset: int = 0,
                    shortlist: FlatL2Shortlist | None = None, query_vectors: torch.Tensor | None = None,
                    k: int = 4, tolerance: float = 1e-5, dtype: torch.dtype = torch.float32,
                    stats: SearchStats | None = None, column_block: int = 4096,
                    pair_block: int = 16384, exact_block: int = 1024) -> None:
    """In place: lower best_dist/best_index (Q,) to the exact nearest of `database` where it is nearer.

    `best_dist[q]` must be the exact distance of body `best_index[q]` (inf when none); database body i
    has global index `index_offset + i`.
    """
    stats = stats if stats is not None else SearchStats()
    stats.pairs += len(queries) * len(database)
    if shortlist is not None and len(database) > 0 and k > 0:
        # upper bound: exact distances of the L2 shortlist (correctness never depends on it)
        cand = shortlist.search(query_vectors, k).to(best_index.device)  # (Q, k)
        qi, ki = (cand >= 0).nonzero(as_tuple=True)
        xi = cand[qi, ki]
        d = paired_mesh_distance(queries.vertices[qi], database.vertices[xi], chunk=exact_block, dtype=dtype)
        update_best(best_dist, best_index, qi, xi + index_offset, d)
        stats.shortlisted += qi.numel()
    coarsest = levels.levels[0].weights
    for start in range(0, len(database), column_block):
        block = database.rows(slice(start, start + column_block))
        bound = coarse_distance_matrix(queries.centroids[0], block.centroids[0], coarsest)  # (Q, n)
        qi, xi = (bound <= (best_dist + tolerance)[:, None]).nonzero(as_tuple=True)  # (P,), (P,)
        lb = bound[qi, xi]
        del bound
        stats.add_survivors(0, qi.numel())
        for level in range(1, len(levels.levels)):
            weights = levels.levels[level].weights
            keep_q, keep_x, keep_lb = [], [], []
            for p in range(0, qi.numel(), pair_block):
                pq, px = qi[p:p + pair_block], xi[p:p + pair_block]
                b = paired_coarse_distance(queries.centroids[level][pq], block.centroids[level][px], weights)
                keep = b <= best_dist[pq] + tolerance
                keep_q.append(pq[keep])
                keep_x.append(px[keep])
                keep_lb.append(b[keep])
            if keep_q:
                qi, xi, lb = torch.cat(keep_q), torch.cat(keep_x), torch.cat(keep_lb)
            stats.add_survivors(level, qi.numel())
        order = torch.argsort(lb)  # nearest bound first: the upper bounds tighten fastest
        qi, xi, lb = qi[order], xi[order], lb[order]
        for e in range(0, qi.numel(), exact_block):
            eq, ex, el = qi[e:e + exact_block], xi[e:e + exact_block], lb[e:e + exact_block]
            keep = el <= best_dist[eq] + tolerance  # re-check: best_dist may have dropped
            eq, ex = eq[keep], ex[keep]
            stats.exact += eq.numel()
            d = paired_mesh_distance(queries.vertices[eq], block.vertices[ex], chunk=exact_block, dtype=dtype)
            update_best(best_dist, best_index, eq, ex + start + index_offset, d)
