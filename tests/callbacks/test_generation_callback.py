"""Generation metrics under DDP: two gloo processes draw and score exactly the samples one process does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from callbacks.generation import GenerationCallback, GenerationSettings
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.generation import gather_poses, generate_poses, generation_metrics
from pose_prior.evaluation.train_statistics import load_train_statistics
from pose_prior.priors import GANPrior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent

# small sizes; sample_chunk 64 splits the 300 samples into 5 chunks, so both ranks generate a share
SETTINGS = GenerationSettings(dposer_x_samples=300, nrdf_samples=70, num_references=120, apd_samples=40,
                              dnn_samples=50, chunk=97, sample_chunk=64, seed=4)


def tiny_prior() -> GANPrior:
    torch.manual_seed(5)
    gen = PoseGenerator(latent_dim=16)
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(0.3)
    return GANPrior(gen, make_latent("S", 16))


def write_split(path: Path) -> Path:
    np.save(path, (np.random.default_rng(4).normal(size=(400, 63)) * 0.3).astype(np.float32))
    return path


def _worker(rank: int, world: int, init_file: str, split: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    prior = tiny_prior()
    share = generate_poses(prior, 300, seed=4, chunk=64, rank=rank, world=world)
    gathered = gather_poses(share, 300, chunk=64, world=world)
    callback = GenerationCallback(load_body_model("open-light", "smpl"), split, SETTINGS, say=lambda _: None)
    records = callback.compute(prior, rank, world)
    torch.save({"share": share, "gathered": gathered, "records": records}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow  # two spawned interpreters: ~30 s of CPU
def test_two_gloo_ranks_give_the_single_process_numbers(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    split = write_split(tmp_path / "body_pose.npy")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(split), str(tmp_path)), nprocs=2)
    prior = tiny_prior()
    whole = generate_poses(prior, 300, seed=4, chunk=64)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # rank 0 drew chunks 0, 2, 4 (64 + 64 + 44 rows), rank 1 chunks 1, 3: disjoint shares of one set
    assert ranks[0]["share"].shape[0] == 172 and ranks[1]["share"].shape[0] == 128
    torch.testing.assert_close(ranks[1]["share"][:64], whole[64:128], rtol=0, atol=0)
    for r in ranks:
        torch.testing.assert_close(r["gathered"], whole, rtol=0, atol=0)  # the set one process draws
    assert ranks[0]["records"] == ranks[1]["records"]  # broadcast: every rank holds the records
    # independent single-process computation: the whole set scored directly
    body_model = load_body_model("open-light", "smpl")
    train = np.load(split)
    stats = load_train_statistics(train, num_references=120, seed=4, body_model=body_model, log=lambda _: None)
    for record in ranks[0]["records"]:
        conv = record["convention"]
        n = SETTINGS.num_samples(conv)
        expected = generation_metrics(prior, body_model, train, convention=conv, stats=stats, seed=4,
                                      apd_samples=40, dnn_samples=50, chunk=97,
                                      samples=generate_poses(prior, n, seed=4, chunk=64))
        assert record["world_size"] == 2 and record["num_samples"] == n
        for key in ("fid", "precision", "recall", "density", "coverage", "apd_cm", "dnn"):
            if key in expected:
                assert record[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), (conv, key)
    single = GenerationCallback(body_model, split, SETTINGS, say=lambda _: None).compute(prior)
    for a, b in zip(single, ranks[0]["records"]):
        assert {k: v for k, v in a.items() if k != "world_size"} == {k: v for k, v in b.items() if k != "world_size"}


def test_rank_shares_are_disjoint_chunks_of_the_single_process_set() -> None:
    """The fast half of the DDP test (no processes): rank r of 3 draws chunks r, r + 3, ... of the set."""
    prior = tiny_prior()
    whole = generate_poses(prior, 300, seed=4, chunk=64)
    shares = [generate_poses(prior, 300, seed=4, chunk=64, rank=r, world=3) for r in range(3)]
    assert [s.shape[0] for s in shares] == [128, 64 + 44, 64]  # chunks {0, 3}, {1, 4}, {2}
    torch.testing.assert_close(shares[0], torch.cat([whole[:64], whole[192:256]]), rtol=0, atol=0)
    torch.testing.assert_close(shares[1], torch.cat([whole[64:128], whole[256:]]), rtol=0, atol=0)
    torch.testing.assert_close(shares[2], whole[128:192], rtol=0, atol=0)


def test_unknown_convention_is_refused() -> None:
    with pytest.raises(ValueError, match="generation.conventions"):
        GenerationSettings(conventions=("dposer-x", "pose-ndf"))
