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
