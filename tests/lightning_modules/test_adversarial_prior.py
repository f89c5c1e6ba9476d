"""Adversarial prior training: run folder contents, learning signal, resume, DDP weight sync, sweeps."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from datamodules.amass.prepare import PrepareReport
from experiments.config import CONFIGS_DIR, ConfigError, load_config
from experiments.train_gan import build_gan_datamodule, build_gan_module, run_train_gan
from experiments.training import build_trainer
from pose_prior.priors import load_prior
from pose_prior.priors.gan.losses import discriminator_loss
from pose_prior.rotations import body_pose_to_matrices
from tests.fixtures.gan import tiny_gan_overrides


def tiny_config(tmp_path: Path, demo_amass_tree: Path, prepared: Path, *extra: str):
    return load_config(CONFIGS_DIR / "gan_s.yaml", tiny_gan_overrides(tmp_path / "run", demo_amass_tree, prepared, *extra))


@pytest.fixture()
def prepared_copy(prepared_amass: PrepareReport) -> Path:
    return Path(prepared_amass.prepared_dir)


def test_run_folder_holds_config_checkpoints_prior_csv_samples_and_wandb(
    tmp_path: Path, demo_amass_tree: Path, prepared_copy: Path
) -> None:
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_copy, "trainer.max_epochs=2")
    run = run_train_gan(cfg)
    assert (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml").model.latent == "S"
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and len(ckpts) >= 3  # last + one per epoch
    prior = load_prior(run / "prior.pt")
    z = prior.sample(3)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert prior.decode(z).shape == (3, 63)
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    keys = set().union(*(r.keys() for r in rows))
    assert {"train/g_loss_step", "train/d_loss_step", "train/d_real_step", "train/d_fake_step", "val/d_loss"} <= keys
    assert sum(1 for r in rows if r.get("train/d_loss_step")) == 2 * 4  # one row per training step
    assert len(list((run / "samples").glob("epoch*.png"))) == 2
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline, "expected an offline W&B run in the run folder"


def _d_loss_on(module, real: torch.Tensor, z: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        d_real = module.discriminator(body_pose_to_matrices(real))
        d_fake = module.discriminator(module.generator(z))
        s = module.settings
        return float(discriminator_loss(d_real, d_fake, s.joint_loss_weight, s.pose_loss_weight)[0])


def test_short_training_lowers_discriminator_loss_on_held_out_batch(
    tmp_path: Path, demo_amass_tree: Path, prepared_copy: Path
) -> None:
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_copy, "trainer.max_epochs=3", "model.d_steps=5",
                      "trainer.batches_per_epoch=10")
    pl.seed_everything(0)
    dm, module = build_gan_datamodule(cfg), build_gan_module(cfg)
    dm.setup()
    held_out = next(iter(dm.val_dataloader()))  # (32, 63) valid-split poses, never trained on
    z = module.latent.sample(len(held_out), generator=torch.Generator().manual_seed(7))
    before = _d_loss_on(module, held_out, z)
    trainer = build_trainer(cfg, tmp_path, [], [], enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    after = _d_loss_on(module, held_out, z)
    assert after < 0.8 * before, (before, after)


def _params(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_resume_continues_from_last_checkpoint_exactly(
    tmp_path: Path, demo_amass_tree: Path, prepared_copy: Path
) -> None:
    """Two epochs in one go equal one epoch, a stop, and `resume=true` for the second (weights, Adam, RNG)."""
    straight = tiny_config(tmp_path / "a", demo_amass_tree, prepared_copy, "trainer.max_epochs=2",
                           "logger.wandb_mode=disabled")
    run_a = run_train_gan(straight)
    first = tiny_config(tmp_path / "b", demo_amass_tree, prepared_copy, "trainer.max_epochs=1",
                        "logger.wandb_mode=disabled")
    run_train_gan(first)
    resumed = tiny_config(tmp_path / "b", demo_amass_tree, prepared_copy, "trainer.max_epochs=2", "resume=true",
                          "logger.wandb_mode=disabled")
    run_b = run_train_gan(resumed)
    a = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(run_b / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)
    rows = list(csv.DictReader(open(run_b / "csv" / "metrics.csv")))
    assert {r["epoch"] for r in rows if r.get("train/d_loss_step")} == {"0", "1"}
    # resuming with another architecture is refused before anything is overwritten, naming the key
    recorded = (run_b / "config.yaml").read_text()
    changed = tiny_config(tmp_path / "b", demo_amass_tree, prepared_copy, "trainer.max_epochs=3", "resume=true",
                          "model.disc_hidden=32", "logger.wandb_mode=disabled")
    with pytest.raises(ConfigError, match=r"records model.disc_hidden=64, this config has model.disc_hidden=32"):
        run_train_gan(changed)
    assert (run_b / "config.yaml").read_text() == recorded


class _RecordParams(pl.Callback):
    """Each rank's final weights, and its torch RNG state after its first training step."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0 and trainer.current_epoch == 0:
            torch.save(torch.get_rng_state(), self.out / f"rng{trainer.global_rank}.pt")

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(_params(pl_module), self.out / f"rank{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_two_processes_keep_identical_weights(tmp_path: Path, demo_amass_tree: Path, prepared_copy: Path) -> None:
    cfg = tiny_config(tmp_path, demo_amass_tree, prepared_copy, "trainer.max_epochs=1", "trainer.devices=2",
                      "trainer.accelerator=cpu", "trainer.strategy=ddp_spawn_find_unused_parameters_true",
                      "trainer.batches_per_epoch=3")
    dm, module = build_gan_datamodule(cfg), build_gan_module(cfg)
    start = _params(module)
    trainer = build_trainer(cfg, tmp_path, [_RecordParams(tmp_path)], [], enable_checkpointing=False,
                            limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(r0, start)  # training moved the weights
    torch.testing.assert_close(r0, r1, rtol=0, atol=0)
    # each rank draws its own latents and dropout masks: the step's stream is seeded by (seed, epoch, batch, rank)
    # (pl.seed_everything gave both ranks the same seed; without the per-rank stream these would be equal)
    assert not torch.equal(torch.load(tmp_path / "rng0.pt"), torch.load(tmp_path / "rng1.pt"))
