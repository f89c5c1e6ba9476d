"""Seeded train/valid/test splits of a shape set and its small manifest.

Bodies are split by a numpy permutation seeded with `seed` (fractions `valid`, `test`, the rest train),
so the same file and seed always give the same split. SURREAL's own code splits its shapes 80/20 by
order (first 80% train); a seeded permutation is used here for every source so the splits of the open set,
SURREAL and AMASS are made alike. The manifest records the source, the seed, per split the row ids' count
and label counts, and the betas' mean and std: what a run needs to say which bodies it saw.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from datamodules.shapes.readers import ShapeSet
from pose_prior.io import atomic_write_json

SPLITS = ("train", "valid", "test")


def split_rows(num: int, seed: int, valid: float = 0.1, test: float = 0.1) -> dict[str, np.ndarray]:
    """Sorted row ids of each split; every split gets at least one body when num >= 3."""
    if num < 3:
        raise ValueError(f"a shape set needs at least 3 bodies to split, got {num}")
    if not (0 < valid < 1 and 0 < test < 1 and valid + test < 1):
        raise ValueError(f"split fractions must be in (0, 1) with valid + test < 1, got {valid}, {test}")
    perm = np.random.default_rng(seed).permutation(num)
    n_valid, n_test = max(1, round(valid * num)), max(1, round(test * num))
    n_valid = min(n_valid, num - n_test - 1)
    return {"valid": np.sort(perm[:n_valid]), "test": np.sort(perm[n_valid:n_valid + n_test]),
            "train": np.sort(perm[n_valid + n_test:])}


def split_manifest(shapes: ShapeSet, rows: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """A small JSON-able description of the split."""
    out: dict[str, Any] = {"source": shapes.source, "seed": int(seed), "num_bodies": int(len(shapes.betas)),
                           "num_betas": int(shapes.betas.shape[1]), "notes": list(shapes.notes), "splits": {}}
    for split, ids in rows.items():
        b = shapes.betas[ids].astype(np.float64)
        labels, counts = np.unique(shapes.labels[ids], return_counts=True)
        out["splits"][split] = {
            "num": int(len(ids)),
            "labels": {str(k): int(c) for k, c in zip(labels, counts)} if len(labels) <= 10 else len(labels),
            "betas_mean": b.mean(0).round(4).tolist(), "betas_std": b.std(0).round(4).tolist(),
        }
    return out


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write_json(path, manifest)
