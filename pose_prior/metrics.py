"""Mesh distance of the paper (Eq. 5): mean over vertices of the Euclidean distance of corresponding vertices.

Values are in the input units (metres for SMPL and the open model; multiply by 1000 for mm). Eq. 5 is a
metric, but it is not the L2 distance of the flattened vertex vectors (see DESIGN.md).
"""

from __future__ import annotations

import torch


def mesh_distance(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) x (B, V, 3) -> (B,) mean per-vertex Euclidean distance (Eq. 5)."""
    if v1.shape != v2.shape or v1.dim() < 2 or v1.shape[-1] != 3:
        raise ValueError(f"mesh_distance expects two (..., V, 3) tensors of one shape, got {tuple(v1.shape)}, {tuple(v2.shape)}")
    return (v1 - v2).norm(dim=-1).mean(dim=-1)


def pairwise_mesh_distance(
    a: torch.Tensor, b: torch.Tensor, max_elements: int = 1 << 24
) -> torch.Tensor:
    """(N, V, 3) x (M, V, 3) -> (N, M) Eq. 5 distances, in chunks of at most `max_elements` differences."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[1:] != b.shape[1:] or a.shape[-1] != 3:
        raise ValueError(
            f"pairwise_mesh_distance expects (N, V, 3) and (M, V, 3), got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    N, V, _ = a.shape
    M = b.shape[0]
    out = a.new_empty(N, M)
    per_pair = V * 3
    cols = max(1, min(M, max_elements // per_pair))
    rows = max(1, min(N, max_elements // (per_pair * cols)))
    for i in range(0, N, rows):
        ai = a[i : i + rows, None]  # (n, 1, V, 3)
        for j in range(0, M, cols):
            out[i : i + rows, j : j + cols] = (ai - b[None, j : j + cols]).norm(dim=-1).mean(dim=-1)
    return out
