"""Batches/s of the AMASS training loader at batch 1024, against a per-item map-style DataLoader.

Both read the same memory-mapped float32 (N, 63) array (1M rows by default, in a temp dir):
  ours:     PoseBatchSampler yields a batch's sorted row ids, PoseArrayDataset gathers them in one
            fancy-indexing read (DataLoader batch_size=None)
  baseline: a Dataset whose __getitem__ returns one row, DataLoader(batch_size=1024, shuffle=True)
            with the default collate (what a plain map-style dataset does)
Usage: python bench/amass_batches.py [--rows 1000000] [--seconds 3] [--workers 0]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.amass.datamodule import PoseArrayDataset, PoseBatchSampler, _identity  # noqa: E402


class RowDataset(Dataset):
    """The baseline: one row per __getitem__."""

    def __init__(self, path: Path) -> None:
        self.rows = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return self.rows.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.rows[i]))


def batches_per_second(loader: DataLoader, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while True:
        for batch in loader:
            assert batch.shape == (1024, 63) and batch.dtype == torch.float32
            count += 1
            if time.perf_counter() - start > seconds:
                return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    tmp = Path(tempfile.mkdtemp(prefix="amass_batches_"))
    try:
        path = tmp / "body_pose.npy"
        rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.rows, 63))
        rows[:] = np.random.default_rng(0).standard_normal((args.rows, 63), dtype=np.float32)
        rows.flush()
        del rows
        ours = DataLoader(PoseArrayDataset(path), batch_size=None, collate_fn=_identity, num_workers=args.workers,
                          sampler=PoseBatchSampler(args.rows, 1024, shuffle=True, seed=0, drop_last=True))
        base = DataLoader(RowDataset(path), batch_size=1024, shuffle=True, drop_last=True, num_workers=args.workers)
        batches_per_second(ours, 0.5)  # warm the page cache
        ours_bps = batches_per_second(ours, args.seconds)
        base_bps = batches_per_second(base, args.seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"rows {args.rows:,}, batch 1024, workers {args.workers}")
    print(f"ours (whole-batch memmap gather): {ours_bps:9.1f} batches/s  ({ours_bps * 1024 / 1e6:.2f}M rows/s)")
    print(f"baseline (per-item + collate):    {base_bps:9.1f} batches/s")
    print(f"ratio ours/baseline: {ours_bps / base_bps:.1f}x")


if __name__ == "__main__":
    main()
