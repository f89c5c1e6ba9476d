"""The paper's mesh distance (Eq. 5), the one home of its formula, and the all-pairs form built on it.

D(a, b) = (1/V) sum_v ||a_v - b_v||_2 for vertex arrays (V, 3): the mean over vertices of the Euclidean
distance of corresponding vertices, in the input units (metres for SMPL and the open model; x1000 for
mm). It is a metric (a sum of Euclidean distances, so the triangle inequality holds), but not the L2
distance of the flattened vertex vectors: an index over flattened vertices can only shortlist. Every
function here computes differences directly (no |a|^2 + |b|^2 - 2ab expansion), so float32 results
carry only rounding error, never cancellation.
"""

from __future__ import annotations

import torch


def mesh_distance(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """(..., V, 3) x (..., V, 3) -> (...,) mean per-vertex Euclidean distance (Eq. 5); differentiable."""
    if v1.shape != v2.shape or v1.dim() < 2 or v1.shape[-1] != 3:
        raise ValueError(f"mesh_distance expects two (..., V, 3) tensors of one shape, got {tuple(v1.shape)}, {tuple(v2.shape)}")
    return (v1 - v2).norm(dim=-1).mean(dim=-1)


def _check_bodies(name: str, bodies: torch.Tensor) -> None:
    if bodies.dim() != 3 or bodies.shape[-1] != 3:
        raise ValueError(f"{name}: expected vertex arrays of shape (N, V, 3), got {tuple(bodies.shape)}")


def paired_mesh_distance(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Eq. 5 between corresponding bodies a[i], b[i] (P, V, 3) -> (P,), chunked over pairs."""
    _check_bodies("a", a)
    _check_bodies("b", b)
    if a.shape != b.shape:
        raise ValueError(f"paired_mesh_distance: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    dtype = dtype or torch.promote_types(a.dtype, torch.float32)
    return torch.cat([mesh_distance(a[i:i + chunk].to(dtype), b[i:i + chunk].to(dtype))
                      for i in range(0, a.shape[0], chunk)]) if a.shape[0] else a.new_zeros(0, dtype=dtype)


def mesh_distance_matrix(queries: torch.Tensor, database: torch.Tensor, query_chunk: int = 256,
                         database_chunk: int = 4096, vertex_chunk: int = 64,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
    """All-pairs Eq. 5 (Q, V, 3) x (N, V, 3) -> (Q, N): vertex-major cdist, chunked (the fastest torch form here)."""
    _check_bodies("queries", queries)
    _check_bodies("database", database)
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"vertex counts differ: queries {queries.shape[1]}, database {database.shape[1]}")
    dtype = dtype or torch.promote_types(queries.dtype, torch.float32)
    num_vertices = queries.shape[1]
    out = torch.empty(queries.shape[0], database.shape[0], dtype=dtype, device=queries.device)
    for j in range(0, database.shape[0], database_chunk):
        xt = database[j:j + database_chunk].to(dtype).transpose(0, 1).contiguous()  # (V, n, 3)
        for i in range(0, queries.shape[0], query_chunk):
            qt = queries[i:i + query_chunk].to(dtype).transpose(0, 1).contiguous()  # (V, q, 3)
            acc = torch.zeros(qt.shape[1], xt.shape[1], dtype=dtype, device=queries.device)
            for v in range(0, num_vertices, vertex_chunk):
                d = torch.cdist(qt[v:v + vertex_chunk], xt[v:v + vertex_chunk],
                                compute_mode="donot_use_mm_for_euclid_dist")  # (vc, q, n)
                acc += d.sum(0)
            out[i:i + query_chunk, j:j + database_chunk] = acc / num_vertices
    return out


def brute_force_nearest(queries: torch.Tensor, database: torch.Tensor, chunk: int = 4096,
                        dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact nearest database body of each query under Eq. 5 -> (dist (Q,), index (Q,)); ties -> lowest index."""
    dtype = dtype or torch.promote_types(queries.dtype, torch.float32)
    best = torch.full((queries.shape[0],), float("inf"), dtype=dtype, device=queries.device)
    best_index = torch.full((queries.shape[0],), -1, dtype=torch.long, device=queries.device)
    for j in range(0, database.shape[0], chunk):
        d = mesh_distance_matrix(queries, database[j:j + chunk], database_chunk=chunk, dtype=dtype)
        idx = d.argmin(dim=1)  # first occurrence on ties (documented for torch.argmin)
        dist = d.gather(1, idx[:, None])[:, 0]
        better = dist < best  # strict: an earlier chunk wins ties
        best = torch.where(better, dist, best)
        best_index = torch.where(better, idx + j, best_index)
    return best, best_index
