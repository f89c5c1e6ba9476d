"""`make sweep SWEEP=...`: create a W&B sweep from a YAML and print the `wandb agent` command.

Every trial is an ordinary run (`pose-prior <config> key=value ...`). `render_sweep_commands` expands a
sweep file into the command lines its trials would run (the whole grid, or `limit` random draws for
random/bayes sweeps), which is also how a sweep runs without a W&B account: one command per line.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml


def load_sweep(path: str | Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("method", "parameters", "command"):
        if key not in spec:
            raise ValueError(f"{path}: sweep file lacks '{key}' (see experiments/configs/sweeps/*.yaml)")
    return spec


def _values(name: str, spec: dict[str, Any], rng: random.Random, draws: int) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        if isinstance(lo, int) and isinstance(hi, int):
            return [rng.randint(lo, hi) for _ in range(draws)]
        return [rng.uniform(lo, hi) for _ in range(draws)]
    raise ValueError(f"parameter '{name}': expected values, value or min/max, got {sorted(spec)}")


def trial_overrides(spec: dict[str, Any], limit: int | None = None, seed: int = 0) -> list[list[str]]:
    """key=value override lists, one per trial: the full grid, or `limit` random draws otherwise."""
    rng = random.Random(seed)
    names = sorted(spec["parameters"])
    if spec["method"] == "grid":
        grids = [_values(n, spec["parameters"][n], rng, 1) for n in names]
        combos = list(itertools.product(*grids))
        if limit is not None:
            combos = combos[:limit]
    else:
        draws = limit or 10
        columns = [_values(n, spec["parameters"][n], rng, draws) for n in names]
        combos = [tuple(rng.choice(col) if len(col) != draws else col[i] for col in columns) for i in range(draws)]
    return [[f"{n}={v}" for n, v in zip(names, combo)] for combo in combos]


def render_sweep_commands(path: str | Path, limit: int | None = None) -> list[list[str]]:
    """The command lines the sweep's trials run, with W&B's macros expanded."""
    spec = load_sweep(path)
    commands = []
    for overrides in trial_overrides(spec, limit):
        cmd: list[str] = []
        for part in spec["command"]:
            if part == "${env}":
                continue
            if part in ("${args_no_hyphens}", "${args}"):
                cmd.extend(overrides if part == "${args_no_hyphens}" else [f"--{o}" for o in overrides])
            elif part in ("${program}",):
                cmd.append(spec.get("program", "pose-prior"))
            else:
                cmd.append(str(part))
        commands.append(cmd)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior-sweep", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="sweep YAML (e.g. experiments/configs/sweeps/<name>.yaml)")
    parser.add_argument("--project", default="pose-prior")
    parser.add_argument("--dry-run", action="store_true", help="only print the trials' command lines")
    args = parser.parse_args(argv)
    spec = load_sweep(args.sweep)
    commands = render_sweep_commands(args.sweep)
    if not args.dry_run:
        from experiments.training import wandb_mode

        if wandb_mode("auto") != "online":
            print("Not logged in to W&B (run `wandb login`): a sweep needs the W&B server.\n"
                  "The trials as plain commands, runnable one by one or on a cluster:", file=sys.stderr)
        else:
            import wandb

            sweep_id = wandb.sweep(spec, project=args.project)
            print(f"Created sweep {sweep_id}. Start agents (one per GPU/node) with:")
            print(f"  .venv/bin/wandb agent {wandb.api.default_entity}/{args.project}/{sweep_id}")
            return 0
    for cmd in commands:
        print(" ".join(cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
