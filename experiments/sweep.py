"""`make sweep SWEEP=...` (a W&B sweep: the server picks trials, agents run them) and `make sweep-local
SWEEP=...` (the same sweep file run here, trial after trial, without a W&B server).

Every trial is an ordinary run (`pose-prior <config> key=value ...`) in its own run folder with its own
run name. Locally: `<out>/trial_NNN/`, and `<out>/summary.csv` / `summary.md` list every trial's
parameters, exit code and the sweep's metric (the last value in the trial's csv/metrics.csv), best first.
Under a W&B agent, `pose-prior` itself puts each trial in `outputs/sweeps/<sweep id>/<run id>/`
(see `agent_trial_overrides`). Local methods: `grid` = the whole grid; `random` (and `bayes`, which needs
the server's model) = `--limit` draws, each parameter from its own distribution.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

DEFAULT_LOCAL_DRAWS = 10


def load_sweep(path: str | Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("method", "parameters", "command"):
        if key not in spec:
            raise ValueError(f"{path}: sweep file lacks '{key}' (see experiments/configs/sweeps/*.yaml)")
    return spec


def _grid_values(name: str, spec: dict[str, Any]) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    raise ValueError(f"parameter '{name}': a grid sweep needs `values` or `value`, got {sorted(spec)}")


def _quantise(x: float, spec: dict[str, Any]) -> float:
    q = spec.get("q", 1)
    return round(x / q) * q


def draw(name: str, spec: dict[str, Any], rng: random.Random) -> Any:
    """One value of a parameter, following W&B's sweep distributions (the default as W&B infers it:
    `values` -> categorical, int min/max -> int_uniform, float min/max -> uniform)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        probs = spec.get("probabilities")
        return rng.choices(list(spec["values"]), weights=probs)[0] if probs else rng.choice(list(spec["values"]))
    lo, hi = spec.get("min"), spec.get("max")
    kind = spec.get("distribution") or (
        "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform" if lo is not None else None)
    if kind == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if kind == "uniform":
        return rng.uniform(lo, hi)
    if kind == "q_uniform":
        return _quantise(rng.uniform(lo, hi), spec)
    if kind == "log_uniform_values":  # min / max are the values
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if kind == "q_log_uniform_values":
        return _quantise(math.exp(rng.uniform(math.log(lo), math.log(hi))), spec)
    if kind == "log_uniform":  # min / max are natural-log exponents
        return math.exp(rng.uniform(lo, hi))
    if kind == "normal":
        return rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
    if kind == "q_normal":
        return _quantise(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)), spec)
    if kind == "log_normal":
        return math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    raise ValueError(f"parameter '{name}': unsupported distribution {kind!r} (or no values / min / max): {spec}")


def trial_overrides(spec: dict[str, Any], limit: int | None = None, seed: int = 0) -> list[list[str]]:
    """key=value override lists, one per trial: the full grid (first `limit`), or `limit` random draws."""
    names = sorted(spec["parameters"])
    params = spec["parameters"]
    if spec["method"] == "grid":
        combos = list(itertools.product(*(_grid_values(n, params[n]) for n in names)))
        combos = combos[:limit] if limit is not None else combos
    else:
        rng = random.Random(seed)
        combos = [tuple(draw(n, params[n], rng) for n in names) for _ in range(limit or DEFAULT_LOCAL_DRAWS)]
    return [[f"{n}={_format(v)}" for n, v in zip(names, combo)] for combo in combos]


def _format(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render_command(spec: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """The sweep file's `command` with W&B's macros expanded for one trial."""
    cmd: list[str] = []
    for part in spec["command"]:
        if part == "${env}":
            continue
        if part in ("${args_no_hyphens}", "${args}"):
            cmd.extend(overrides if part == "${args_no_hyphens}" else [f"--{o}" for o in overrides])
        elif part == "${program}":
            cmd.append(spec.get("program", "pose-prior"))
        elif part == "${interpreter}":
            cmd.append(sys.executable)
        else:
            cmd.append(str(part))
    return cmd


def render_sweep_commands(path: str | Path, limit: int | None = None, seed: int = 0) -> list[list[str]]:
    """The command lines the sweep's trials run, with W&B's macros expanded."""
    spec = load_sweep(path)
    return [render_command(spec, overrides) for overrides in trial_overrides(spec, limit, seed)]


def agent_trial_overrides(overrides: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """Under a W&B sweep agent (WANDB_SWEEP_ID and WANDB_RUN_ID set): the trial's own run folder and run
    name, unless the command line already chose them. Without an agent: nothing."""
    env = os.environ if environ is None else environ
    sweep_id, run_id = env.get("WANDB_SWEEP_ID"), env.get("WANDB_RUN_ID")
    if not (sweep_id and run_id):
        return []
    given = {o.split("=", 1)[0] for o in overrides}
    extra = {"output_dir": f"outputs/sweeps/{sweep_id}/{run_id}", "logger.name": run_id,
             "logger.group": f"sweep-{sweep_id}"}
    return [f"{k}={v}" for k, v in extra.items() if k not in given]


# --- running a sweep on this machine ----------------------------------------------------------------


def last_metric(run_dir: Path, name: str) -> float | None:
    """The last value of `name` in a run's csv/metrics.csv (None: never logged or no CSV)."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return None
    value = None
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get(name) not in (None, ""):
                value = float(row[name])
    return value


def run_local(path: str | Path, out: Path, limit: int | None, extra: Sequence[str], seed: int = 0) -> list[dict]:
    """Run every trial of the sweep file as a subprocess into `out/trial_NNN`; write the summary table."""
    spec = load_sweep(path)
    metric = (spec.get("metric") or {}).get("name")
    goal = (spec.get("metric") or {}).get("goal", "minimize")
    trials = trial_overrides(spec, limit, seed)
    rows: list[dict[str, Any]] = []
    for i, overrides in enumerate(trials):
        name = f"trial_{i:03d}"
        run_dir = out / name
        own = [f"output_dir={run_dir}", f"logger.name={out.name}-{name}", f"logger.group={out.name}", "logger.csv=true"]
        cmd = render_command(spec, [*overrides, *own, *extra])
        print(f"[{i + 1}/{len(trials)}] {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd).returncode
        row = {"trial": name, **dict(o.split("=", 1) for o in overrides), "exit_code": code,
               "seconds": round(time.perf_counter() - t0, 1)}
        if metric:
            row[metric] = last_metric(run_dir, metric)
        rows.append(row)
        write_summary(out, rows, metric, goal)
    return rows


def write_summary(out: Path, rows: list[dict[str, Any]], metric: str | None, goal: str) -> None:
    """summary.csv and summary.md: trials sorted by the metric (best first; failed or unmeasured last)."""
    from experiments.tables import table_markdown
    from pose_prior.io import atomic_write_text

    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric) if metric else None
        if value is None or row["exit_code"] != 0:
            return (1, 0.0)
        return (0, value if goal == "minimize" else -value)

    ordered = sorted(rows, key=key)
    columns = list(dict.fromkeys(k for r in ordered for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(ordered)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    cells = [[("" if r.get(c) is None else f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r[c]))
              for c in columns] for r in ordered]
    title = f"metric: {metric} ({goal})\n\n" if metric else ""
    atomic_write_text(out / "summary.md", title + table_markdown(columns, cells))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior-sweep", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="sweep YAML (e.g. experiments/configs/sweeps/<name>.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides added to every trial (--local)")
    parser.add_argument("--project", default="pose-prior")
    parser.add_argument("--entity", default=None, help="W&B team or user (default: the account's)")
    parser.add_argument("--dry-run", action="store_true", help="only print the trials' command lines")
    parser.add_argument("--local", action="store_true", help="run the trials here, one after another")
    parser.add_argument("--limit", type=int, default=None, help="at most this many trials (random: draws)")
    parser.add_argument("--out", default=None, help="local sweep folder (default outputs/sweeps/<name>-<time>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the local random draws")
    args = parser.parse_intermixed_args(argv)  # overrides may follow the options
    spec = load_sweep(args.sweep)
    if args.local:
        out = Path(args.out or f"outputs/sweeps/{Path(args.sweep).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        if out.exists() and any(out.iterdir()):
            print(f"error: {out} is not empty: choose another --out", file=sys.stderr)
            return 2
        rows = run_local(args.sweep, out, args.limit, args.overrides, args.seed)
        print((out / "summary.md").read_text())
        print(f"sweep folder: {out} (summary.csv, summary.md, trial_NNN/)")
        return 0 if any(r["exit_code"] == 0 for r in rows) else 1
    commands = render_sweep_commands(args.sweep, args.limit, args.seed)
    if not args.dry_run:
        from experiments.training import wandb_mode

        if wandb_mode("auto") != "online":
            print("Not logged in to W&B (run `wandb login`): a W&B sweep needs the server. Run it here instead with\n"
                  f"  make sweep-local SWEEP={args.sweep}\nor the trials as plain commands, one by one or on a "
                  "cluster (give each its own output_dir=...):", file=sys.stderr)
        else:
            import wandb

            sweep_id = wandb.sweep(spec, project=args.project, entity=args.entity)
            entity = f" --entity {args.entity}" if args.entity else ""
            print(f"Created sweep {sweep_id}. Start agents (one per GPU/node) with:")
            print(f"  .venv/bin/wandb agent --project {args.project}{entity} {sweep_id}")
            return 0
    for i, cmd in enumerate(commands):
        own = [f"output_dir=outputs/sweeps/{Path(args.sweep).stem}/trial_{i:03d}",
               f"logger.name={Path(args.sweep).stem}-trial_{i:03d}"]
        print(" ".join([*cmd, *own]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
