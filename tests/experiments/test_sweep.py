"""Sweep files expand into valid runs: every trial's overrides validate against the schema."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from experiments.config import CONFIGS_DIR, load_config
from experiments.run import main as run_main
from experiments.run import resolve_config_path
from experiments.sweep import load_sweep, render_sweep_commands
from experiments.sweep import main as sweep_main
from tests.fixtures.gan import tiny_gan_overrides

SWEEPS = sorted((CONFIGS_DIR / "sweeps").glob("*.yaml"))


def test_there_is_a_latent_dsteps_lr_sweep() -> None:
    params = set().union(*(load_sweep(p)["parameters"] for p in SWEEPS))
    assert {"model.latent", "model.d_steps", "optim.lr"} <= params


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_every_trial_is_a_valid_run(path: Path) -> None:
    spec = load_sweep(path)
    commands = render_sweep_commands(path)
    if spec["method"] == "grid":
        assert len(commands) == math.prod(len(p["values"]) for p in spec["parameters"].values())
    assert len({tuple(c) for c in commands}) == len(commands)
    for cmd in commands:
        program_idx = next(i for i, part in enumerate(cmd) if part.endswith("pose-prior"))
        config, overrides = cmd[program_idx + 1], cmd[program_idx + 2 :]
        cfg = load_config(resolve_config_path(config), overrides)
        for item in overrides:
            key, value = item.split("=", 1)
            assert OmegaConf.select(cfg, key) == yaml.safe_load(value)


def test_dry_run_prints_one_line_per_trial(capsys: pytest.CaptureFixture) -> None:
    assert sweep_main([str(SWEEPS[0]), "--dry-run"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(render_sweep_commands(SWEEPS[0]))


def test_one_trial_runs_for_a_batch(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    """The first trial of every sweep, run as the agent would run it (through the CLI), shrunk to one batch."""
    for path in SWEEPS:
        cmd = render_sweep_commands(path, limit=1)[0]
        program_idx = next(i for i, part in enumerate(cmd) if part.endswith("pose-prior"))
        run_dir = tmp_path / path.stem
        overrides = tiny_gan_overrides(run_dir, demo_amass_tree, Path(prepared_amass.prepared_dir),
                                       "trainer.max_epochs=1", "trainer.batches_per_epoch=1", "logger.wandb_mode=disabled")
        assert run_main([*cmd[program_idx + 1 :], *overrides]) == 0
        assert (run_dir / "prior.pt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
