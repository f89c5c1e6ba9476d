"""LightningDataModule serving (B, 63) float32 body-pose batches from the prepared, memory-mapped arrays.

Batches are whole: a sampler yields each batch's sorted row ids and the dataset gathers them from the
memmap with one fancy-indexing read (no per-item __getitem__ + collate). The sampler is a
DistributedSampler subclass that shards by rank itself, so Lightning leaves it in place under DDP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.amass.prepare import POSE_DIM, read_manifest

SPLIT_OF_STAGE = {"train": "train", "val": "valid", "test": "test"}


class PoseArrayDataset(Dataset):
    """Rows of a prepared (N, 63) float32 .npy, opened lazily as a memmap in each process.

    `dataset[ids]` with an int64 array of row ids returns a (len(ids), 63) float32 tensor.
    """

    def __init__(self, path: str | Path, expected_rows: Optional[int] = None) -> None:
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # reads the header only
        if header.ndim != 2 or header.shape[1] != POSE_DIM or header.dtype != np.float32:
            raise ValueError(f"{self.path}: expected a float32 (N, {POSE_DIM}) array, found {header.dtype} {header.shape}")
        if expected_rows is not None and header.shape[0] != expected_rows:
            raise ValueError(f"{self.path}: {header.shape[0]} rows, the manifest says {expected_rows}; re-run the preparation")
        self.num_rows = int(header.shape[0])
        del header
        self._array: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return self.num_rows

    def _rows(self) -> np.ndarray:
        if self._array is None:  # first use in this process (e.g. a DataLoader worker)
            self._array = np.asarray(np.load(self.path, mmap_mode="r"))  # plain ndarray view of the mapping
        return self._array

    def __getitem__(self, ids: Any) -> torch.Tensor:
        if isinstance(ids, np.ndarray):  # np.take gathers rows ~3x faster than fancy indexing
            return torch.from_numpy(np.take(self._rows(), ids, axis=0))  # (B, 63)
        return torch.from_numpy(np.array(self._rows()[ids]))  # (63,) or a slice

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_array"] = None  # each worker / spawned process opens its own memmap
        return state


class PoseBatchSampler(DistributedSampler):
    """Yields this rank's batches of sorted row ids (int64 arrays) for one epoch.

    Every rank draws the same permutation (seed + epoch), padded to a multiple of the world size as
    DistributedSampler does, and takes every `num_replicas`-th id from `rank`, so ranks' shards are
    disjoint and together cover the split. `num_batches` fixes the batches per epoch (full batches from
    fresh permutations, as many passes as needed); otherwise one pass, the last batch kept unless drop_last.
    """

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 num_replicas: int = 1, rank: int = 0, num_batches: Optional[int] = None) -> None:
        if num_rows < 1:
            raise ValueError("cannot sample batches from an empty split")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive (got {batch_size})")
        super().__init__(range(num_rows), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.drop_last_batch = drop_last
        self.num_batches = num_batches
        self.rows_per_rank = math.ceil(num_rows / num_replicas)

    def _rank_ids(self, repeat: int) -> np.ndarray:
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, repeat])
            ids = rng.permutation(self.num_rows)
        else:
            ids = np.arange(self.num_rows)
        padded = self.rows_per_rank * self.num_replicas
        if padded > self.num_rows:  # repeat the first ids so every rank has as many (DDP needs equal batch counts)
            ids = np.concatenate([ids, ids[: padded - self.num_rows]])
        return ids[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.num_batches is None:
            ids = self._rank_ids(0)
            for start in range(0, len(ids), self.batch_size):
                batch = ids[start:start + self.batch_size]
                if len(batch) < self.batch_size and self.drop_last_batch:
                    break
                yield np.sort(batch)
            return
        buffer, repeat, produced = np.empty(0, dtype=np.int64), 0, 0
        while produced < self.num_batches:
            if len(buffer) < self.batch_size:
                if self.rows_per_rank >= self.batch_size:
                    buffer = self._rank_ids(repeat)  # a fresh pass; the previous pass's remainder is dropped
                else:  # a split smaller than one batch: passes are concatenated (rows repeat in a batch)
                    while len(buffer) < self.batch_size:
                        buffer = np.concatenate([buffer, self._rank_ids(repeat)])
                        repeat += 1
                repeat += 1
            yield np.sort(buffer[: self.batch_size])
            buffer = buffer[self.batch_size:]
            produced += 1

    def __len__(self) -> int:
        if self.num_batches is not None:
            return self.num_batches
        full, rest = divmod(self.rows_per_rank, self.batch_size)
        return full + (1 if rest and not self.drop_last_batch else 0)


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


class AmassDataModule(pl.LightningDataModule):
    """train/val/test = the prepared train/valid/test splits, as (B, 63) float32 axis-angle body poses."""

    def __init__(
        self,
        prepared_dir: str | Path,
        batch_size: int = 1024,
        num_workers: int = 0,
        seed: int = 0,
        prepare_fn: Optional[Callable[[], Any]] = None,
        train_batches_per_epoch: Optional[int] = None,
        eval_batch_size: Optional[int] = None,
        drop_last: bool = True,
    ) -> None:
        super().__init__()
        self.prepared_dir = Path(prepared_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.prepare_fn = prepare_fn  # must be picklable for ddp_spawn (e.g. a functools.partial)
        self.train_batches_per_epoch = train_batches_per_epoch
        self.drop_last = drop_last
        self.datasets: dict[str, PoseArrayDataset] = {}
        self.manifest: Optional[dict[str, Any]] = None

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> AmassDataModule:
        """Build from a validated config with a `data` (and `demo`) section; prepares on demand."""
        import functools

        from datamodules.amass.prepare import ensure_prepared, prepare_kwargs_from_config

        kwargs: dict[str, Any] = dict(
            prepared_dir=str(cfg.data.prepared_dir),
            batch_size=int(cfg.data.batch_size),
            num_workers=int(cfg.data.num_workers),
            seed=int(cfg.data.seed),
            prepare_fn=functools.partial(ensure_prepared, **prepare_kwargs_from_config(cfg)),
        )
        trainer_cfg = getattr(cfg, "trainer", None)  # an epoch is a fixed number of batches (docs/design.md#training)
        if trainer_cfg is not None and getattr(trainer_cfg, "batches_per_epoch", None):
            kwargs["train_batches_per_epoch"] = int(trainer_cfg.batches_per_epoch)
        kwargs.update(overrides)
        return cls(**kwargs)

    def prepare_data(self) -> None:
        if self.prepare_fn is not None:
            self.prepare_fn()

    def setup(self, stage: Optional[str] = None) -> None:
        manifest = read_manifest(self.prepared_dir)
        if manifest is None:
            raise FileNotFoundError(f"{self.prepared_dir}: no complete AMASS preparation (manifest.json missing); "
                                    "run `make prepare-amass` or give the DataModule a prepare_fn")
        self.manifest = manifest
        for split, info in manifest["splits"].items():
            if split not in self.datasets:
                self.datasets[split] = PoseArrayDataset(self.prepared_dir / info["array"], expected_rows=info["frames"])

    def dataset(self, split: str) -> PoseArrayDataset:
        if not self.datasets:
            self.setup()
        if split not in self.datasets:
            raise KeyError(f"split '{split}' not prepared in {self.prepared_dir}; prepared: {', '.join(self.datasets)}")
        if len(self.datasets[split]) == 0:
            raise ValueError(f"split '{split}' in {self.prepared_dir} has no frames (see the manifest's missing_datasets)")
        return self.datasets[split]

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.world_size, trainer.global_rank
        return 1, 0

    def sampler(self, split: str, shuffle: bool, batch_size: int, drop_last: bool,
                num_batches: Optional[int] = None, num_replicas: Optional[int] = None,
                rank: Optional[int] = None) -> PoseBatchSampler:
        world, this_rank = self._rank()
        return PoseBatchSampler(len(self.dataset(split)), batch_size, shuffle=shuffle, seed=self.seed,
                                drop_last=drop_last, num_replicas=num_replicas or world,
                                rank=this_rank if rank is None else rank, num_batches=num_batches)

    def _loader(self, split: str, sampler: PoseBatchSampler) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=None, sampler=sampler, collate_fn=_identity,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.sampler("train", True, self.batch_size, self.drop_last,
                                                  self.train_batches_per_epoch))

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", self.sampler("valid", False, self.eval_batch_size, False))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.sampler("test", False, self.eval_batch_size, False))
