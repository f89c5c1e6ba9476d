"""Batches of betas for the shape priors (GAN-beta), and of (pose, betas) pairs for GAN-theta-beta.

`ShapeDataModule` reads one shape source (`open`: the shipped open shape set; `surreal`: SURREAL's
smpl_data.npz; `amass`: one body per AMASS subject), splits it (seeded, `datamodules.shapes.splits`),
writes the split's manifest if asked, and serves (B, K) float32 batches with the AMASS data's batch
sampler (`PoseBatchSampler`: a fixed number of full batches per epoch from seeded permutations, sharded
by rank under DDP).

`PoseShapeDataModule` pairs an `AmassDataModule` with a `ShapeDataModule`: each batch is
{"body_pose": (B, 63), "betas": (B, K)}, the two drawn independently. That is all the data give: AMASS
has few subjects and SURREAL's shapes carry no poses, so the real pairs follow the product of the pose
and shape distributions (the authors trained GAN-theta-beta from AMASS poses and SURREAL shapes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from datamodules.amass.datamodule import AmassDataModule, PoseBatchSampler
from datamodules.shapes.readers import (
    OPEN_SHAPES,
    ShapeSet,
    read_amass_betas,
    read_open_shapes,
    read_surreal_shapes,
)
from datamodules.shapes.splits import split_manifest, split_rows, write_manifest

Source = Literal["open", "surreal", "amass"]


def read_shape_source(source: Source, path: str | os.PathLike | None = None, gender: str = "both",
                      num_betas: int = 10) -> ShapeSet:
    """The shape set of `source` (`path`: SURREAL's npz, the AMASS folder, or another open-set file)."""
    if source == "open":
        return read_open_shapes(path or OPEN_SHAPES, num_betas)
    if path is None:
        raise ValueError(f"shape source {source!r} needs a path (data.shapes_path)")
    if source == "surreal":
        return read_surreal_shapes(path, gender, num_betas)  # type: ignore[arg-type]
    if source == "amass":
        return read_amass_betas(path, num_betas)
    raise ValueError(f"unknown shape source {source!r}; expected 'open', 'surreal' or 'amass'")


class BetasDataset(Dataset):
    """Rows of a (N, K) float32 array, gathered by an array of row ids (one batch per item)."""

    def __init__(self, betas: np.ndarray) -> None:
        self.betas = torch.from_numpy(np.ascontiguousarray(betas, dtype=np.float32))

    def __len__(self) -> int:
        return self.betas.shape[0]

    def __getitem__(self, ids: Any) -> torch.Tensor:
        return self.betas[torch.as_tensor(ids, dtype=torch.long)]


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


class ShapeDataModule(pl.LightningDataModule):
    """train/val/test = seeded splits of one shape set, as (B, K) float32 betas."""

    def __init__(self, source: Source = "open", path: Optional[str] = None, gender: str = "both",
                 num_betas: int = 10, batch_size: int = 256, eval_batch_size: Optional[int] = None,
                 seed: int = 0, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                 train_batches_per_epoch: Optional[int] = None, manifest_path: Optional[str | Path] = None) -> None:
        super().__init__()
        self.source, self.path, self.gender, self.num_betas = source, path, gender, int(num_betas)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size or batch_size)
        self.seed, self.fractions = int(seed), (float(valid_fraction), float(test_fraction))
        self.train_batches_per_epoch = train_batches_per_epoch
        self.manifest_path = manifest_path
        self.splits: dict[str, BetasDataset] = {}
        self.manifest: Optional[dict[str, Any]] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.splits:
            return
        shapes = read_shape_source(self.source, self.path, self.gender, self.num_betas)
        rows = split_rows(len(shapes.betas), self.seed, *self.fractions)
        self.splits = {split: BetasDataset(shapes.betas[ids]) for split, ids in rows.items()}
        self.manifest = split_manifest(shapes, rows, self.seed)
        if self.manifest_path is not None:
            write_manifest(self.manifest_path, self.manifest)

    def betas(self, split: str) -> torch.Tensor:
        """All betas (N, K) of a split."""
        self.setup()
        return self.splits[split].betas

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, split: str, shuffle: bool, batch_size: int, num_batches: Optional[int]) -> DataLoader:
        self.setup()
        world, rank = self._rank()
        sampler = PoseBatchSampler(len(self.splits[split]), batch_size, shuffle=shuffle, seed=self.seed,
                                   drop_last=shuffle, num_replicas=world, rank=rank, num_batches=num_batches)
        return DataLoader(self.splits[split], batch_size=None, sampler=sampler, collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size, self.train_batches_per_epoch)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", False, self.eval_batch_size, None)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size, None)


class PoseShapeDataModule(pl.LightningDataModule):
    """Batches {"body_pose": (B, 63), "betas": (B, K)}: AMASS poses and shapes drawn independently."""

    def __init__(self, poses: AmassDataModule, shapes: ShapeDataModule) -> None:
        super().__init__()
        self.poses, self.shapes = poses, shapes

    def prepare_data(self) -> None:
        self.poses.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        self.poses.setup(stage)
        self.shapes.setup(stage)

    def _share_trainer(self) -> None:
        trainer = getattr(self, "trainer", None)
        for dm in (self.poses, self.shapes):
            dm.trainer = trainer

    def _combined(self, pose_loader: DataLoader, shape_loader: DataLoader) -> CombinedLoader:
        return CombinedLoader({"body_pose": pose_loader, "betas": shape_loader}, mode="min_size")

    def train_dataloader(self) -> CombinedLoader:
        self._share_trainer()
        return self._combined(self.poses.train_dataloader(), self.shapes.train_dataloader())

    def val_dataloader(self) -> CombinedLoader:
        self._share_trainer()
        # the shape split is small: cycle it with a fixed number of batches to match the pose batches
        shapes = self.shapes._loader("valid", False, self.poses.eval_batch_size, len(self.poses.val_dataloader()))
        return self._combined(self.poses.val_dataloader(), shapes)
