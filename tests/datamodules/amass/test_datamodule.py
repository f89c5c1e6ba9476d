"""AmassDataModule: exact rows from the memmaps, whole-batch sampling, per-rank shards under DDP."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.amass.datamodule import AmassDataModule, PoseArrayDataset, PoseBatchSampler
from datamodules.amass.prepare import ARRAY_NAME

REPO = Path(__file__).resolve().parents[3]


def _array(prepared_amass, split):
    return np.load(prepared_amass.prepared_dir / split / ARRAY_NAME)


def _batches_with_ids(dm, loader):
    ids = list(iter(loader.sampler))
    batches = list(loader)
    assert len(ids) == len(batches) == len(loader)
    return ids, batches


def test_val_and_test_loaders_yield_the_split_in_order(prepared_amass):
    dm = AmassDataModule(prepared_amass.prepared_dir, batch_size=128, eval_batch_size=100)
    dm.setup("fit")
    for loader, split in ((dm.val_dataloader(), "valid"), (dm.test_dataloader(), "test")):
        batches = list(loader)
        assert all(b.dtype == torch.float32 and b.shape[1] == 63 for b in batches)
        assert [len(b) for b in batches[:-1]] == [100] * (len(batches) - 1)
        np.testing.assert_array_equal(torch.cat(batches).numpy(), _array(prepared_amass, split))


def test_train_batches_are_the_rows_their_ids_name(prepared_amass):
    rows = _array(prepared_amass, "train")  # (960, 63)
    dm = AmassDataModule(prepared_amass.prepared_dir, batch_size=100, seed=3, drop_last=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    ids, batches = _batches_with_ids(dm, loader)
    for batch_ids, batch in zip(ids, batches):
        assert (np.diff(batch_ids) > 0).all()  # sorted, unique: one sequential-ish memmap read
        np.testing.assert_array_equal(batch.numpy(), rows[batch_ids])
    everything = np.concatenate(ids)
    np.testing.assert_array_equal(np.sort(everything), np.arange(len(rows)))  # one epoch = every row once
    assert not np.array_equal(everything, np.arange(len(rows)))  # shuffled
    # drop_last: only full batches
    dm_drop = AmassDataModule(prepared_amass.prepared_dir, batch_size=100, seed=3)
    dm_drop.setup("fit")
    assert [len(b) for b in dm_drop.train_dataloader()] == [100] * 9


def test_epochs_reshuffle_deterministically(prepared_amass):
    def epoch_ids(seed, epoch):
        sampler = PoseBatchSampler(960, 64, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return np.concatenate(list(sampler))

    np.testing.assert_array_equal(epoch_ids(0, 0), epoch_ids(0, 0))
    assert not np.array_equal(epoch_ids(0, 0), epoch_ids(0, 1))
    assert not np.array_equal(epoch_ids(0, 0), epoch_ids(1, 0))


def test_fixed_batches_per_epoch_cycles_through_the_split():
    sampler = PoseBatchSampler(250, 100, shuffle=True, seed=0, num_batches=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10 and all(len(b) == 100 for b in batches)
    # each pass over the 250 rows gives 2 full batches of distinct rows, then a fresh permutation
    for k in range(0, 10, 2):
        assert len(np.unique(np.concatenate(batches[k:k + 2]))) == 200
    assert not np.array_equal(np.sort(np.concatenate(batches[0:2])), np.sort(np.concatenate(batches[2:4])))
    tiny = list(PoseBatchSampler(30, 100, seed=0, num_batches=3))  # split smaller than a batch
    assert [len(b) for b in tiny] == [100] * 3 and set(np.concatenate(tiny)) == set(range(30))


@pytest.mark.parametrize("num_rows", [960, 7])
def test_two_ranks_get_disjoint_shards_covering_the_split(prepared_amass, num_rows):
    shards = []
    for rank in (0, 1):
        sampler = PoseBatchSampler(num_rows, 50, shuffle=True, seed=5, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        shards.append(np.concatenate(list(sampler)))
    assert len(shards[0]) == len(shards[1])  # equal batch counts: no DDP hang
    np.testing.assert_array_equal(np.union1d(shards[0], shards[1]), np.arange(num_rows))
    overlap = np.intersect1d(shards[0], shards[1])
    assert len(overlap) == (0 if num_rows % 2 == 0 else 1)  # only DistributedSampler-style padding repeats

    # the same through the DataModule with rank 0/1 of world size 2, on real rows
    rows = _array(prepared_amass, "train")
    dm = AmassDataModule(prepared_amass.prepared_dir, batch_size=64, seed=5, drop_last=False)
    dm.setup("fit")
    seen = []
    for rank in (0, 1):
        sampler = dm.sampler("train", True, 64, False, num_replicas=2, rank=rank)
        loader = dm._loader("train", sampler)
        batches = torch.cat(list(loader)).numpy()
        ids = np.concatenate(list(sampler))
        np.testing.assert_array_equal(batches, rows[ids])
        seen.append(ids)
    assert len(np.intersect1d(*seen)) == 0 and len(np.union1d(*seen)) == len(rows)


def test_lightning_keeps_the_rank_aware_sampler(prepared_amass):
    """Under DDP Lightning injects a DistributedSampler unless the loader already has one: ours is one."""
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    dm = AmassDataModule(prepared_amass.prepared_dir, batch_size=64)
    dm.setup("fit")
    connector = trainer._data_connector
    assert connector._requires_distributed_sampler(DataLoader(dm.dataset("train")))  # a plain loader gets one
    assert not connector._requires_distributed_sampler(dm.train_dataloader())  # ours is left alone


def test_workers_open_their_own_memmap_and_match(prepared_amass):
    dm0 = AmassDataModule(prepared_amass.prepared_dir, batch_size=128, seed=1, num_workers=0)
    dm2 = AmassDataModule(prepared_amass.prepared_dir, batch_size=128, seed=1, num_workers=2)
    dm0.setup("fit")
    dm2.setup("fit")
    a = torch.cat(list(dm0.train_dataloader()))
    b = torch.cat(list(dm2.train_dataloader()))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ds = pickle.loads(pickle.dumps(dm2.dataset("train")))
    assert ds._array is None  # not shipped to workers
    np.testing.assert_array_equal(ds[np.array([3, 7])].numpy(), _array(prepared_amass, "train")[[3, 7]])


def test_dataset_rejects_wrong_arrays(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 60), dtype=np.float32))
    with pytest.raises(ValueError, match="bad.npy: expected a float32"):
        PoseArrayDataset(tmp_path / "bad.npy")
    np.save(tmp_path / "ok.npy", np.zeros((4, 63), dtype=np.float32))
    with pytest.raises(ValueError, match="4 rows, the manifest says 5"):
        PoseArrayDataset(tmp_path / "ok.npy", expected_rows=5)


def test_from_config_prepares_on_demand_and_pickles(tmp_path):
    from experiments.config import load_config

    cfg = load_config(REPO / "experiments" / "configs" / "prepare_amass.yaml", [
        f"data.demo_dir={tmp_path / 'demo'}", f"data.prepared_dir={tmp_path / 'prepared'}",
        "demo.frames_per_sequence=30", "data.batch_size=16",
    ])
    dm = AmassDataModule.from_config(cfg)
    dm = pickle.loads(pickle.dumps(dm))  # ddp_spawn pickles the DataModule, prepare_fn included
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.dataset("train")) == 2 * 2 * 2 * 30
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (16, 63)
    with pytest.raises(KeyError, match="split 'nope' not prepared"):
        dm.dataset("nope")


@pytest.mark.slow
def test_ddp_spawn_two_ranks_see_disjoint_rows(prepared_amass, tmp_path):
    """A real 2-process gloo run: each rank's training batches are its own shard of the train split."""
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    dm = AmassDataModule(prepared_amass.prepared_dir, batch_size=40, seed=2, drop_last=False)
    trainer.fit(_RecordRows(str(tmp_path)), datamodule=dm)
    seen = [np.load(tmp_path / f"rank{r}.npy") for r in (0, 1)]
    rows = _array(prepared_amass, "train")
    # match each seen row to its index in the split (rows are distinct)
    index = {r.tobytes(): i for i, r in enumerate(rows)}
    ids = [np.array([index[r.tobytes()] for r in s]) for s in seen]
    assert len(ids[0]) == len(ids[1]) == len(rows) // 2
    assert len(np.intersect1d(*ids)) == 0 and len(np.union1d(*ids)) == len(rows)


class _RecordRows(pl.LightningModule):
    """Saves every training batch it sees, per rank."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(63, 1)
        self.seen: list = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.detach().cpu().numpy())
        return self.layer(batch).mean()

    def on_train_epoch_end(self) -> None:
        np.save(Path(self.out_dir) / f"rank{self.global_rank}.npy", np.concatenate(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)
