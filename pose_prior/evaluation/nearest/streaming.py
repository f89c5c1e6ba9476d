"""Streaming exact recall: per reference, the running Eq. 5 nearest among generated bodies fed in chunks.

Memory does not grow with the number of generated bodies: only the current chunk and the state
(min_dist (R,), argmin (R,)) are held. Ties go to the lowest global generated index, so results do not
depend on the chunking, and states from several processes merge with `merge_nearest` /
`all_reduce_nearest` (min distance, then min index among the holders of that distance).
"""

from __future__ import annotations

import torch

from pose_prior.evaluation.nearest.exact import (
    DEFAULT_LEVELS,
    NO_INDEX,
    CoarseLevels,
    PreparedBodies,
    SearchStats,
    improve_nearest,
    merge_nearest_,
    prepare_bodies,
)
from pose_prior.evaluation.nearest.faiss_index import FlatL2Shortlist


class StreamingNearestMesh:
    """Running exact nearest generated body of each reference (R, V, 3) under Eq. 5.

    Each `update(chunk, offset)` uses the references as queries and the chunk as the database: the
    running minimum is already an upper bound per reference, a FAISS L2 shortlist inside the chunk
    tightens it, and the pivot and coarse lower bounds skip most of the chunk before the exact re-rank.
    """

    def __init__(self, references: torch.Tensor, levels: tuple[int, ...] = DEFAULT_LEVELS,
                 shortlist_k: int = 4, dtype: torch.dtype = torch.float32, use_gpu: bool | None = None,
                 tolerance: float = 1e-5, reference_block: int = 2048) -> None:
        if references.dim() != 3 or references.shape[-1] != 3 or references.shape[0] == 0:
            raise ValueError(f"references: expected a non-empty (R, V, 3) tensor, got {tuple(references.shape)}")
        self.dtype, self.shortlist_k, self.tolerance = dtype, shortlist_k, tolerance
        self.use_gpu, self.reference_block = use_gpu, reference_block
        self.levels = CoarseLevels(references, levels)
        self.references: PreparedBodies = prepare_bodies(references, self.levels, dtype)
        self.reference_vectors = self.levels.shortlist_vectors(self.references.centroids[-1])  # (R, 3G)
        self.min_dist = torch.full((len(self.references),), float("inf"), dtype=dtype, device=references.device)
        self.argmin = torch.full((len(self.references),), NO_INDEX, dtype=torch.long, device=references.device)
        self.seen = 0
        self.stats = SearchStats()

    @torch.no_grad()
    def update(self, generated_chunk: torch.Tensor, offset: int) -> None:
        """Fold in generated bodies (C, V, 3) whose global indices are offset .. offset + C - 1."""
        if generated_chunk.shape[0] == 0:
            return
        chunk = prepare_bodies(generated_chunk, self.levels, self.dtype)
        shortlist = None
        if self.shortlist_k > 0:
            shortlist = FlatL2Shortlist(self.levels.shortlist_vectors(chunk.centroids[-1]), use_gpu=self.use_gpu)
        for start in range(0, len(self.references), self.reference_block):
            sl = slice(start, start + self.reference_block)
            improve_nearest(self.references.rows(sl), chunk, self.min_dist[sl], self.argmin[sl],
                            self.levels, index_offset=offset, shortlist=shortlist,
                            query_vectors=self.reference_vectors[sl], k=self.shortlist_k,
                            tolerance=self.tolerance, dtype=self.dtype, stats=self.stats)
        self.seen += generated_chunk.shape[0]

    def merge(self, other_dist: torch.Tensor, other_index: torch.Tensor) -> None:
        """Fold in another state (e.g. another rank's) with the same tie rule."""
        merge_nearest_(self.min_dist, self.argmin, other_dist.to(self.min_dist), other_index.to(self.argmin))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(min_dist (R,) in metres, argmin (R,) global generated index; NO_INDEX where nothing was seen)."""
        return self.min_dist.clone(), self.argmin.clone()


def merge_nearest(dist_a: torch.Tensor, index_a: torch.Tensor, dist_b: torch.Tensor,
                  index_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise merge of two nearest-neighbour states: smaller distance, ties -> lower global index."""
    dist, index = dist_a.clone(), index_a.clone()
    merge_nearest_(dist, index, dist_b.to(dist), index_b.to(index))
    return dist, index


def all_reduce_nearest(dist: torch.Tensor, index: torch.Tensor, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-reduce a (dist, index) state across torch.distributed ranks; the index follows the minimum.

    Same result as torchmetrics `dist_reduce_fx="min"` on dist followed by a min over the indices of the
    ranks that hold that minimum (lowest global index wins ties).
    """
    import torch.distributed as torch_dist

    reduced = dist.clone()
    torch_dist.all_reduce(reduced, op=torch_dist.ReduceOp.MIN, group=group)
    holder = torch.where(dist == reduced, index, torch.full_like(index, NO_INDEX))
    torch_dist.all_reduce(holder, op=torch_dist.ReduceOp.MIN, group=group)
    return reduced, holder
