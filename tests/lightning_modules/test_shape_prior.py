"""Shape-prior training (GAN-beta, GAN-theta-beta): learning signal on held-out shapes, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from experiments.config import CONFIGS_DIR, load_config
from experiments.tasks import TASKS, Task
from experiments.train_shape_gan import build_shape_datamodule, build_shape_module, run_train_shape_gan
from experiments.training import build_trainer
from pose_prior.priors import load_prior

TINY = ["model.d_steps=2", "model.gen_hidden=64", "trainer.batches_per_epoch=4", "trainer.val_batches=1",
        "trainer.log_every_n_steps=1", "trainer.progress_bar=false", "body_model.path=open-light",
        "trainer.checkpoint_every_n_epochs=1", "logger.wandb_mode=disabled", "shape_coverage.num_generated=200"]


@pytest.fixture(autouse=True)
def _task(monkeypatch: pytest.MonkeyPatch) -> None:
    """The train-shape-gan task, whether or not experiments/tasks.py lists it yet."""
    from experiments.schemas.shape import TrainShapeGanConfig

    monkeypatch.setitem(TASKS, "train-shape-gan", Task(TrainShapeGanConfig, "experiments.train_shape_gan:run_train_shape_gan"))


def _config(name: str, tmp_path: Path, *extra: str):
    return load_config(CONFIGS_DIR / f"{name}.yaml", [f"output_dir={tmp_path / 'run'}", *TINY, *extra])


def test_short_training_on_the_open_shapes_lowers_the_held_out_discriminator_loss(tmp_path: Path) -> None:
    cfg = _config("gan_beta", tmp_path, "data.batch_size=64", "trainer.max_epochs=3", "model.d_steps=5",
                  "trainer.batches_per_epoch=20")
    pl.seed_everything(0)
    dm, module = build_shape_datamodule(cfg), build_shape_module(cfg)
    dm.setup()
    held_out = dm.betas("valid")  # never trained on
    with torch.no_grad():
        before = float(module.held_out_losses(held_out, seed=7)["d_loss"])
    trainer = build_trainer(cfg, tmp_path, [], [], enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    module.eval()
    with torch.no_grad():
        after = float(module.held_out_losses(held_out, seed=7)["d_loss"])
    assert after < 0.8 * before, (before, after)


def test_gan_beta_run_folder_holds_a_prior_manifest_and_shape_coverage(tmp_path: Path) -> None:
    run = run_train_shape_gan(_config("gan_beta", tmp_path, "data.batch_size=32", "trainer.max_epochs=1"))
    prior = load_prior(run / "prior.pt")
    assert prior.kind == "gan_beta" and prior.decode(prior.sample(3)).shape == (3, 10)
    manifest = json.loads((run / "shapes_manifest.json").read_text())
    assert manifest["source"] == "open" and set(manifest["splits"]) == {"train", "valid", "test"}
    report = json.loads((run / "shape_coverage.json").read_text())
    assert report["prior"]["num_generated"] == report["normal"]["num_generated"] == 200
    assert report["normal"]["recall"]["mean_mm"] > 0


def test_gan_theta_beta_trains_on_amass_poses_and_open_shapes(tmp_path: Path, demo_amass_tree: Path,
                                                              prepared_amass) -> None:
    cfg = _config("gan_theta_beta", tmp_path, "data.batch_size=16", "trainer.max_epochs=1",
                  f"data.amass_dir={demo_amass_tree}", f"data.prepared_dir={prepared_amass.prepared_dir}",
                  "shape_coverage.at_end=false")
    run = run_train_shape_gan(cfg)
    prior = load_prior(run / "prior.pt")
    assert prior.kind == "gan_theta_beta" and prior.yields == "body_pose+betas"
    z = prior.sample(2)
    pose, betas = prior.decode_both(z)
    assert pose.shape == (2, 63) and betas.shape == (2, 10) and torch.isfinite(pose).all()
