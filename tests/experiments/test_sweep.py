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
        assert len(commands) == math.prod(len(p.get("values", [None])) for p in spec["parameters"].values())
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


def test_random_draws_follow_each_parameters_distribution() -> None:
    from experiments.sweep import trial_overrides

    spec = {"method": "random", "parameters": {
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
        "model.d_steps": {"distribution": "int_uniform", "min": 1, "max": 3},
        "model.latent": {"values": ["S", "U"], "probabilities": [1.0, 0.0]},
        "model.gen_dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
        "seed": {"value": 7}}}
    trials = [dict(o.split("=", 1) for o in t) for t in trial_overrides(spec, limit=200, seed=1)]
    lrs = [float(t["optim.lr"]) for t in trials]
    assert all(1e-5 <= v <= 1e-2 for v in lrs)
    assert sum(v < 1e-4 for v in lrs) > 40  # log-uniform: a third of the draws below 1e-4 (uniform: ~1%)
    assert {t["model.d_steps"] for t in trials} == {"1", "2", "3"}
    assert {t["model.latent"] for t in trials} == {"S"} and {t["seed"] for t in trials} == {"7"}
    assert all(0.0 <= float(t["model.gen_dropout"]) <= 0.5 for t in trials)


def test_agent_trials_get_their_own_folder_and_name() -> None:
    from experiments.sweep import agent_trial_overrides

    env = {"WANDB_SWEEP_ID": "abc", "WANDB_RUN_ID": "run1"}
    extra = dict(o.split("=", 1) for o in agent_trial_overrides(["optim.lr=1e-4"], env))
    assert extra["output_dir"] == "outputs/sweeps/abc/run1" and extra["logger.name"] == "run1"
    assert agent_trial_overrides(["output_dir=x"], env)[0].startswith("logger.name")
    assert agent_trial_overrides([], {}) == []


@pytest.mark.slow  # two trial processes: ~30 s
def test_a_local_sweep_runs_each_trial_in_its_own_folder_and_writes_a_summary(
        tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    import csv

    from experiments.sweep import main as sweep_main

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "train/d_loss_epoch", "goal": "minimize"},
        "command": ["${interpreter}", "-m", "experiments.run", "gan_s", "${args_no_hyphens}"],
        "parameters": {"model.latent": {"values": ["S", "U"]}}}))
    out = tmp_path / "sweep"
    tiny = tiny_gan_overrides(tmp_path / "unused", demo_amass_tree, Path(prepared_amass.prepared_dir),
                              "trainer.max_epochs=1", "trainer.batches_per_epoch=2", "logger.wandb_mode=disabled",
                              )[1:]  # every trial chooses its own output_dir
    assert sweep_main([str(sweep), "--local", "--out", str(out), *tiny]) == 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(r["model.latent"] for r in rows) == ["S", "U"] and all(r["exit_code"] == "0" for r in rows)
    assert all(float(r["train/d_loss_epoch"]) > 0 for r in rows)
    for trial in ("trial_000", "trial_001"):
        assert (out / trial / "prior.pt").is_file()
    assert "train/d_loss_epoch" in (out / "summary.md").read_text()
