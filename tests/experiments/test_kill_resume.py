"""A training process killed with SIGKILL at random moments and resumed each time (`resume=true`) ends with
the same weights as an uninterrupted run: a kill loses at most the current epoch, never a checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.fixtures.gan import tiny_gan_overrides

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6
# Kept checkpoints only every 4 epochs: between them, only last.ckpt holds the progress.
# Enough batches that training, not start-up, fills most of a run, so kills land inside epochs.
SETTINGS = [f"trainer.max_epochs={EPOCHS}", "trainer.checkpoint_every_n_epochs=4", "logger.wandb_mode=disabled",
            "samples.every_n_epochs=3", "trainer.batches_per_epoch=60"]


def command(run_dir: Path, amass: Path, prepared: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", "gan_s",
            *tiny_gan_overrides(run_dir, amass, prepared, *SETTINGS, *extra)]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == EPOCHS - 1
    return {**ckpt["state_dict"], **{f"optimizer{i}": torch.cat([s["exp_avg"].flatten() for s in o["state"].values()])
                                     for i, o in enumerate(ckpt["optimizer_states"])}}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights(
        tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference = tmp_path / "reference"
    start = time.perf_counter()
    done = subprocess.run(command(reference, demo_amass_tree, prepared), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    full = time.perf_counter() - start  # this machine's time for a whole run: the kill moments scale with it

    rng = random.Random(1234)
    run_dir, kills, resumes = tmp_path / "killed", 0, 0
    while True:
        extra = ["resume=true"] if run_dir.exists() else []
        resumes += bool(extra)
        proc = subprocess.Popen(command(run_dir, demo_amass_tree, prepared, *extra), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if kills < 4:
            # moments relative to a whole run's time, so that they land inside the run on a fast or a slow
            # machine; at most 45% of a run each, so at least two kills land before the work is done
            time.sleep(rng.uniform(0.25, 0.45) * full)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        break
    assert kills >= 2, "the run finished before it could be killed: raise the sleeps"
    expected, got = weights(reference), weights(run_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    ref_prior = torch.load(reference / "prior.pt", weights_only=True)["generator"]["state_dict"]
    got_prior = torch.load(run_dir / "prior.pt", weights_only=True)["generator"]["state_dict"]
    assert all(torch.equal(ref_prior[k], got_prior[k]) for k in ref_prior)
