"""`make compare` with no priors: which trained runs it reuses, and which it resumes."""

from __future__ import annotations

from pathlib import Path

from experiments.compare import KIND_CONFIGS, _unfinished_epochs
from experiments.config import CONFIGS_DIR, load_config
from pose_prior.priors import save_prior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent


def _run(tmp_path: Path, epochs_completed: int | None, checkpoint: bool = True) -> Path:
    prior = tmp_path / "gan_s" / "prior.pt"
    provenance = {} if epochs_completed is None else {"epochs_completed": epochs_completed}
    save_prior(prior, PoseGenerator(latent_dim=8), make_latent("S", 8), provenance)
    if checkpoint:
        (prior.parent / "checkpoints").mkdir()
        (prior.parent / "checkpoints" / "last.ckpt").write_bytes(b"")
    return prior


def test_a_prior_written_midway_is_counted_short_of_its_config(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS_DIR / KIND_CONFIGS["gan_s"], ["trainer.max_epochs=8"])
    assert _unfinished_epochs(_run(tmp_path / "a", 3), cfg) == 5  # resumed for the 5 epochs it lacks
    assert _unfinished_epochs(_run(tmp_path / "b", 8), cfg) is None  # complete: reused
    assert _unfinished_epochs(_run(tmp_path / "c", 3, checkpoint=False), cfg) is None  # nothing to resume from
    assert _unfinished_epochs(_run(tmp_path / "d", None), cfg) is None  # no position recorded (e.g. converted)
