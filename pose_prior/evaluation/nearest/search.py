"""Exact Eq. 5 nearest neighbours of queries in a fixed database (e.g. precision: generated -> real bodies)."""

from __future__ import annotations

import torch

from pose_prior.evaluation.nearest.exact import (
    DEFAULT_LEVELS,
    CoarseLevels,
    PreparedBodies,
    SearchStats,
    improve_nearest,
    prepare_bodies,
)
from pose_prior.evaluation.nearest.faiss_index import FlatL2Shortlist


class ExactNearestMeshSearch:
    """Exact nearest database body under Eq. 5 for each query: FAISS shortlist + lower bounds + exact re-rank.

    database_vertices: (N, V, 3) in metres. `levels` are the vertex-group counts of the coarse-bound
    cascade; the finest also gives the FAISS representation (size-weighted group centroids, 3G dims:
    L2 on it ranks like L2 on all vertices, and the shortlist only supplies an upper bound, so exactness
    never depends on it). dtype float64 makes bounds and exact re-rank float64.
    """

    def __init__(self, database_vertices: torch.Tensor, levels: tuple[int, ...] = DEFAULT_LEVELS,
                 shortlist_k: int = 8, dtype: torch.dtype = torch.float32, use_gpu: bool | None = None,
                 tolerance: float = 1e-5, query_block: int = 1024) -> None:
        if database_vertices.dim() != 3 or database_vertices.shape[-1] != 3 or database_vertices.shape[0] == 0:
            raise ValueError(f"database_vertices: expected a non-empty (N, V, 3) tensor, got "
                             f"{tuple(database_vertices.shape)}")
        self.dtype, self.shortlist_k, self.tolerance = dtype, shortlist_k, tolerance
        self.use_gpu, self.query_block = use_gpu, query_block
        self.levels = CoarseLevels(database_vertices, levels)
        self.database: PreparedBodies = prepare_bodies(database_vertices, self.levels, dtype)
        self.stats = SearchStats()
        self._shortlist: FlatL2Shortlist | None = None

    @property
    def shortlist(self) -> FlatL2Shortlist:
        """FAISS index over the database, built on first use (GPU indexes cannot be pickled)."""
        if self._shortlist is None:
            vectors = self.levels.shortlist_vectors(self.database.centroids[-1])
            self._shortlist = FlatL2Shortlist(vectors, use_gpu=self.use_gpu)
        return self._shortlist

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shortlist"] = None
        return state

    def __len__(self) -> int:
        return len(self.database)

    @torch.no_grad()
    def search(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact nearest neighbour of each query (Q, V, 3) -> (dist (Q,) metres, index (Q,)); ties -> lowest index."""
        dist = torch.full((queries.shape[0],), float("inf"), dtype=self.dtype, device=queries.device)
        index = torch.full((queries.shape[0],), -1, dtype=torch.long, device=queries.device)
        for start in range(0, queries.shape[0], self.query_block):
            sl = slice(start, start + self.query_block)
            prepared = prepare_bodies(queries[sl], self.levels, self.dtype)
            improve_nearest(prepared, self.database, dist[sl], index[sl], self.levels,
                            shortlist=self.shortlist, query_vectors=self.levels.shortlist_vectors(prepared.centroids[-1]),
                            k=self.shortlist_k, tolerance=self.tolerance, dtype=self.dtype, stats=self.stats)
        return dist, index
