"""VPoser baseline training: learning signal, v2v metric, loss schedule, best-val prior.pt, early stopping."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules.amass.prepare import PrepareReport
from experiments.config import CONFIGS_DIR, load_config
from experiments.train_vposer import build_vposer_datamodule, build_vposer_module, run_train_vposer
from experiments.training import build_trainer
from lightning_modules.vae_prior import reconstruction_v2v, validation_noise
from pose_prior.priors import VPoserPrior, load_prior
from pose_prior.priors.vposer.model import VPoser
from tests.pose_prior.test_vposer import assert_same_model, fabricated_lightning_checkpoint, randomised_vposer

TINY = [
    "data.batch_size=32", "data.eval_batch_size=32", "trainer.batches_per_epoch=6", "trainer.val_batches=1",
    "trainer.log_every_n_steps=1", "trainer.progress_bar=false", "body_model.path=open-light",
    "model.num_neurons=128",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (20x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(tmp_path: Path, demo_amass_tree: Path, prepared: PrepareReport, *extra: str):
    return load_config(
        CONFIGS_DIR / "vposer.yaml",
        [f"output_dir={tmp_path / 'run'}", f"data.amass_dir={demo_amass_tree}",
         f"data.prepared_dir={prepared.prepared_dir}", "logger.wandb_mode=disabled", *TINY, *extra],
    )


def test_reconstruction_v2v_is_mean_vertex_euclidean_distance(light_body_model) -> None:
    torch.manual_seed(1)
    vposer = VPoser(num_neurons=64).eval()
    pose = 0.3 * torch.randn(5, 63)
    eps = torch.randn(5, 32)
    got = reconstruction_v2v(vposer, pose, light_body_model, eps)
    with torch.no_grad():
        q = vposer.encode(pose)
        rec_pose = vposer.decode(q.loc + q.scale * eps)["pose_body"]  # axis-angle path, not matrices
        a = light_body_model(rec_pose).vertices.double().numpy()
        b = light_body_model(pose).vertices.double().numpy()
    expected = [np.mean([math.dist(a[i, v], b[i, v]) for v in range(a.shape[1])]) for i in range(5)]
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=1e-4, atol=1e-6)
    assert (got > 0).all()
    # eps None decodes the posterior mean: a different (deterministic) reconstruction
    mean_v2v = reconstruction_v2v(vposer, pose, light_body_model)
    torch.testing.assert_close(mean_v2v, reconstruction_v2v(vposer, pose, light_body_model))
    assert not torch.allclose(mean_v2v, got)


def test_short_training_lowers_validation_v2v(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_amass, "trainer.max_epochs=4", "trainer.batches_per_epoch=12")
    pl.seed_everything(0)
    dm, module = build_vposer_datamodule(cfg), build_vposer_module(cfg)
    dm.setup()
    held_out = next(iter(dm.val_dataloader()))  # (32, 63) valid-split poses, never trained on
    eps = validation_noise(len(held_out), cfg.model.latent_dim, 0)

    def v2v() -> float:
        module.eval()
        with torch.no_grad():
            return float(reconstruction_v2v(module.vposer, held_out, module.body_model, eps).mean())

    before = v2v()
    module.train()
    trainer = build_trainer(cfg, tmp_path, [], [], enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    after = v2v()
    assert after < 0.7 * before, (before, after)
    # the metric the module logged for the last epoch is this same batch's v2v
    assert float(trainer.callback_metrics["val/v2v"]) == pytest.approx(after, rel=1e-5)


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "csv" / "metrics.csv")))


def test_run_folder_prior_is_best_validation_vposer(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    import wandb

    wandb.finish()  # an earlier test's run left active would otherwise absorb this one (WandbLogger reuses it)
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_amass, "trainer.max_epochs=3", "loss.keep_extra_until=1",
                      "logger.wandb_mode=offline")
    run = run_train_vposer(cfg)
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "expected an offline W&B run in the run folder"
    rows = _rows(run)
    step_rows = [r for r in rows if r.get("train/loss_total_step")]
    assert len(step_rows) == 3 * 6
    for r in step_rows:  # loss_total is the sum of the logged terms; matrot/jtr only while epoch < 1
        terms = ["train/loss_kl_step", "train/loss_mesh_rec_step"]
        extra = ["train/matrot_step", "train/jtr_step"]
        assert all(r[k] for k in extra) == (r["epoch"] == "0")
        total = sum(float(r[k]) for k in terms + extra if r[k])
        assert float(r["train/loss_total_step"]) == pytest.approx(total, rel=1e-5)
    val = {int(r["epoch"]): (float(r["val/v2v"]), float(r["val/v2v_mm"])) for r in rows if r.get("val/v2v")}
    assert sorted(val) == [0, 1, 2]
    for m, mm in val.values():
        assert mm == pytest.approx(1000 * m, rel=1e-5)
    assert any(r.get("lr-Adam") for r in rows)

    prior = load_prior(run / "prior.pt")
    assert isinstance(prior, VPoserPrior) and prior.latent_type == "N" and prior.latent_dim == 32
    best_epoch = min(val, key=lambda e: val[e][0])
    assert prior.provenance["epoch"] == best_epoch
    # the exported weights reproduce the best logged validation v2v on the same batch and noise
    dm = build_vposer_datamodule(cfg)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        v2v = reconstruction_v2v(prior.vposer, batch, build_vposer_module(cfg).body_model,
                                 validation_noise(len(batch), 32, 0)).mean()
    assert float(v2v) == pytest.approx(val[best_epoch][0], rel=1e-5)
    # decoding gives valid poses: rotation matrices, axis-angle within pi
    z = prior.sample(16, generator=torch.Generator().manual_seed(0))
    mats = prior.decode_matrices(z)  # (16, 21, 3, 3)
    eye = torch.eye(3).expand_as(mats)
    torch.testing.assert_close(mats @ mats.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(mats), torch.ones(16, 21), atol=1e-5, rtol=0)
    pose = prior.decode(z)
    assert pose.shape == (16, 63) and torch.isfinite(pose).all()
    assert (pose.reshape(16, 21, 3).norm(dim=-1) <= math.pi + 1e-5).all()


def test_early_stopping_on_validation_v2v(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    """An improvement threshold no run can meet: training stops `patience` epochs after the first one."""
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_amass, "trainer.max_epochs=6", "trainer.batches_per_epoch=2",
                      "optim.early_stop_patience=1", "optim.early_stop_min_delta=100.0")
    run = run_train_vposer(cfg)
    epochs = {int(r["epoch"]) for r in _rows(run) if r.get("val/v2v")}
    assert epochs == {0, 1}
    assert load_prior(run / "prior.pt").provenance["epoch"] in (0, 1)


def test_resume_continues_from_last_checkpoint_exactly(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    """Two epochs in one go equal one epoch, a stop, and `resume=true` (weights, Adam, scheduler, RNG, best v2v)."""
    common = ("trainer.batches_per_epoch=3", "logger.csv=false")
    run_a = run_train_vposer(tiny_config(tmp_path / "a", demo_amass_tree, prepared_amass, "trainer.max_epochs=2",
                                         *common))
    run_train_vposer(tiny_config(tmp_path / "b", demo_amass_tree, prepared_amass, "trainer.max_epochs=1", *common))
    run_b = run_train_vposer(tiny_config(tmp_path / "b", demo_amass_tree, prepared_amass, "trainer.max_epochs=2",
                                         "resume=true", *common))
    a = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run_b / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    assert not any(k.startswith("_body_model") for k in a["state_dict"])  # the body model is not checkpointed
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)
    assert a["lr_schedulers"][0]["best"] == b["lr_schedulers"][0]["best"]
    pa, pb = load_prior(run_a / "prior.pt"), load_prior(run_b / "prior.pt")
    assert pa.provenance["epoch"] == pb.provenance["epoch"]
    assert pa.provenance["val/v2v"] == pb.provenance["val/v2v"]
    # the plateau scheduler saw every epoch's val v2v: its best is the best exported one
    assert b["lr_schedulers"][0]["best"] == pytest.approx(pb.provenance["val/v2v"], rel=1e-6)
    assert b["lr_schedulers"][0]["last_epoch"] == 2


class _RecordParams(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module) -> None:
        params = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        torch.save(params, self.out / f"rank{trainer.global_rank}.pt")


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_two_processes_keep_identical_weights(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_amass, "trainer.max_epochs=1", "trainer.devices=2",
                      "trainer.accelerator=cpu", "trainer.strategy=ddp_spawn", "trainer.batches_per_epoch=3")
    dm, module = build_vposer_datamodule(cfg), build_vposer_module(cfg)
    start = torch.cat([p.detach().flatten() for p in module.parameters()])
    trainer = build_trainer(cfg, tmp_path, [_RecordParams(tmp_path)], [], enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(r0, start)
    torch.testing.assert_close(r0, r1, rtol=0, atol=0)


def test_published_checkpoint_is_converted_without_training(tmp_path: Path) -> None:
    model = randomised_vposer(4)
    snapshots = tmp_path / "V02_05" / "snapshots"
    snapshots.mkdir(parents=True)
    torch.save(fabricated_lightning_checkpoint(randomised_vposer(5)), snapshots / "V02_05_epoch=08_val_loss=0.04.ckpt")
    newest = snapshots / "V02_05_epoch=13_val_loss=0.03.ckpt"
    torch.save(fabricated_lightning_checkpoint(model), newest)
    old = (snapshots / "V02_05_epoch=08_val_loss=0.04.ckpt").stat().st_mtime
    os.utime(newest, (old + 10, old + 10))
    missing = tmp_path / "no_data"
    cfg = load_config(CONFIGS_DIR / "vposer.yaml", [
        f"output_dir={tmp_path / 'run'}", f"published_checkpoint={tmp_path / 'V02_05'}",
        f"data.amass_dir={missing}", f"data.prepared_dir={missing}", "logger.wandb_mode=disabled"])
    run = run_train_vposer(cfg)
    assert not missing.exists() and not (run / "checkpoints").exists()
    prior = load_prior(run / "prior.pt")
    assert isinstance(prior, VPoserPrior) and prior.latent_type == "N"
    assert_same_model(model, prior.vposer)  # the newest snapshot, as human_body_prior picks it
    assert prior.provenance["source_checkpoint"] == str(newest)
    with pytest.raises(FileNotFoundError, match="published_checkpoint"):
        run_train_vposer(load_config(CONFIGS_DIR / "vposer.yaml", [
            f"output_dir={tmp_path / 'run2'}", f"published_checkpoint={missing}", "logger.wandb_mode=disabled"]))
