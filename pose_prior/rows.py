"""Seeded selection of rows from stored pose arrays (numpy arrays, memmaps, tensors, datasets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def sample_rows(num_rows: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted row ids: `size` distinct rows drawn with `seed` (all rows when size is None or >= num_rows)."""
    if num_rows <= 0:
        raise ValueError("cannot draw reference bodies from an empty split")
    if size is None or size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=int(size), replace=False)).astype(np.int64)


def take_rows(source: Any, ids: np.ndarray) -> torch.Tensor:
    """Rows `ids` (sorted int64) of a pose array (N, 63): numpy array / memmap, tensor, or PoseArrayDataset."""
    if isinstance(source, torch.Tensor):
        rows = source[torch.from_numpy(ids).to(source.device)]
    elif isinstance(source, np.ndarray):
        rows = torch.from_numpy(np.take(source, ids, axis=0))
    else:  # e.g. datamodules.amass.PoseArrayDataset: dataset[int64 ids] -> (k, 63)
        rows = torch.as_tensor(source[ids])
    if rows.dim() != 2 or rows.shape[1] != 63:
        raise ValueError(f"expected body poses of shape (N, 63), got rows of shape {tuple(rows.shape)}")
    return rows.float()
