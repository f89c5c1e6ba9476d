"""Shape data: SURREAL's and AMASS's layouts, the shipped open shape set, seeded splits, the DataModules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.shapes.datamodule import (
    BetasDataset,
    PoseShapeDataModule,
    ShapeDataModule,
    read_shape_source,
)
from datamodules.shapes.readers import OPEN_SHAPES, read_amass_betas, read_open_shapes, read_surreal_shapes
from datamodules.shapes.splits import split_rows


def _write_surreal(path: Path, male: np.ndarray, female: np.ndarray) -> None:
    """A file in SURREAL's smpl_data.npz layout: (N, D) shape arrays beside CMU pose / trans arrays."""
    np.savez(path, maleshapes=male, femaleshapes=female, pose_01_01=np.zeros((4, 72)), trans_01_01=np.zeros((4, 3)),
             regression_verts=np.zeros((3,)))


def test_surreal_layout_reads_male_female_and_both(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    male, female = rng.normal(size=(5, 300)), rng.normal(size=(7, 300))
    path = tmp_path / "smpl_data.npz"
    _write_surreal(path, male, female)
    both = read_surreal_shapes(path)
    assert both.betas.shape == (12, 10) and both.betas.dtype == np.float32
    np.testing.assert_allclose(both.betas, np.concatenate([male, female])[:, :10].astype(np.float32))
    assert list(both.labels) == ["male"] * 5 + ["female"] * 7
    np.testing.assert_allclose(read_surreal_shapes(path, "female").betas, female[:, :10].astype(np.float32))
    assert read_surreal_shapes(path, "male").betas.shape == (5, 10)
    assert read_shape_source("surreal", path, "male").betas.shape == (5, 10)


def test_surreal_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="smpl_data.npz"):
        read_surreal_shapes(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", maleshapes=np.zeros((3, 10)))
    with pytest.raises(KeyError, match="femaleshapes"):
        read_surreal_shapes(tmp_path / "other.npz")
    np.savez(tmp_path / "narrow.npz", maleshapes=np.zeros((3, 4)), femaleshapes=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="betas"):
        read_surreal_shapes(tmp_path / "narrow.npz")


def test_amass_betas_one_body_per_subject(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    subjects = {"CMU/01": rng.normal(size=16), "KIT/3": rng.normal(size=16)}
    for name, betas in subjects.items():
        folder = tmp_path / name
        folder.mkdir(parents=True)
        for seq in range(2):
            np.savez(folder / f"s{seq}_poses.npz", poses=np.zeros((3, 156)), betas=betas, gender="male")
    np.savez(tmp_path / "KIT/3/z_odd_poses.npz", poses=np.zeros((3, 156)), betas=rng.normal(size=16))
    shapes = read_amass_betas(tmp_path)
    assert list(shapes.labels) == ["CMU/01", "KIT/3"]
    np.testing.assert_allclose(shapes.betas, np.stack([subjects["CMU/01"][:10], subjects["KIT/3"][:10]]), rtol=1e-6)
    assert any("KIT/3" in note for note in shapes.notes)  # the disagreeing file is reported, the first kept


def test_the_shipped_open_shape_set() -> None:
    shapes = read_open_shapes()
    assert shapes.betas.shape[1] == 10 and 1000 <= len(shapes.betas) <= 10000
    assert np.isfinite(shapes.betas).all()
    assert set(shapes.labels) == {"male", "female"}
    # drawn from the population the open model's PCA was built on: betas roughly standardised
    assert np.all(np.abs(shapes.betas.mean(0)) < 0.5) and np.all(shapes.betas.std(0) < 2.0)
    report = json.loads(OPEN_SHAPES.with_suffix(".json").read_text())
    assert report["num"] == len(shapes.betas)


def test_splits_are_seeded_disjoint_and_complete() -> None:
    a, b, c = split_rows(100, seed=3), split_rows(100, seed=3), split_rows(100, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (80, 10, 10)


def test_datamodule_serves_batches_and_writes_a_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _write_surreal(tmp_path / "smpl_data.npz", rng.normal(size=(40, 10)), rng.normal(size=(60, 10)))
    dm = ShapeDataModule("surreal", str(tmp_path / "smpl_data.npz"), batch_size=16, train_batches_per_epoch=7,
                         manifest_path=tmp_path / "manifest.json")
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 7 and all(b.shape == (16, 10) and b.dtype == torch.float32 for b in batches)
    assert sum(b.shape[0] for b in dm.val_dataloader()) == 10
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["num_bodies"] == 100 and manifest["splits"]["train"]["num"] == 80
    assert sum(manifest["splits"]["train"]["labels"].values()) == 80


def test_pose_shape_batches_pair_poses_with_betas(prepared_amass) -> None:
    from datamodules.amass.datamodule import AmassDataModule

    poses = AmassDataModule(prepared_amass.prepared_dir, batch_size=8, train_batches_per_epoch=3)
    shapes = ShapeDataModule("open", batch_size=8, train_batches_per_epoch=3)
    dm = PoseShapeDataModule(poses, shapes)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    batch = batches[0][0] if isinstance(batches[0], tuple) else batches[0]
    assert batch["body_pose"].shape == (8, 63) and batch["betas"].shape == (8, 10)


def test_betas_dataset_gathers_rows() -> None:
    ds = BetasDataset(np.arange(30, dtype=np.float32).reshape(3, 10))
    assert torch.equal(ds[np.array([2, 0])][:, 0], torch.tensor([20.0, 0.0]))
