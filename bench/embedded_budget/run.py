"""Recall against training iterations for GAN-S/U/N on the embedded default (synthetic AMASS-format data,
open body model), to choose the embedded default's budget for `model.procedure=authors`.

Each run is an ordinary `pose-prior gan_s|gan_u|gan_n` training with the coverage callback every epoch
(small sizes: the curve's shape, not the paper's absolute numbers). Runs go one after another (2 cores);
a finished run (its `timing.json`) is not run again, so the script can be stopped and restarted.
Outputs: <out>/recall_vs_iterations.csv, <out>/recall_vs_iterations.png, <out>/runs.json.

    .venv/bin/python bench/embedded_budget.py                      # the grid of bench/embedded_budget/README.md
    .venv/bin/python bench/embedded_budget.py --collect-only       # CSV + plot from the runs already made

Torch runs with one thread (OMP_NUM_THREADS=1): on the shared 2-core machine, two threads against other
jobs made a batch-64 iteration ~7x slower. Wall times are noisy (shared machine); recall is deterministic
given the seeds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "pose-prior"
KINDS = {"S": "gan_s", "U": "gan_u", "N": "gan_n"}


def run_name(latent: str, batch: int, procedure: str, iters: int, epochs: int) -> str:
    return f"gan_{latent.lower()}_b{batch}_{procedure}_{epochs}x{iters}"


def train(run_dir: Path, latent: str, batch: int, procedure: str, epochs: int, iters: int, a,
          cov_every: int = 1) -> dict:
    timing = run_dir / "timing.json"
    prev = json.loads(timing.read_text()) if timing.exists() else None
    if prev and (a.resume_to is None or prev["procedure"] != "authors" or prev["epochs"] >= a.resume_to):
        return prev
    if prev:  # continue the finished run to a.resume_to epochs (same stream as an uninterrupted run)
        epochs = a.resume_to
    cmd = [str(CLI), KINDS[latent], f"output_dir={run_dir}", "resume=true" if prev else "overwrite=true",
           f"trainer.max_epochs={epochs}", f"trainer.batches_per_epoch={iters}", f"data.batch_size={batch}",
           f"model.procedure={procedure}", f"coverage.every_n_epochs={cov_every}",
           f"coverage.num_generated={a.num_generated}", f"coverage.num_references={a.num_references}",
           f"coverage.num_precision={a.num_precision}", "coverage.tsne_points=0", "coverage.farthest_samples=0",
           "logger.wandb_mode=disabled", "trainer.progress_bar=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    print("$", " ".join(cmd), flush=True)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    with open(run_dir.parent / f"{run_dir.name}.log", "a" if prev else "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if rc:
        sys.exit(f"run {run_dir} failed ({rc}); see {run_dir.parent / (run_dir.name + '.log')}")
    cov_s = sum(json.loads(p.read_text())["seconds"] for p in run_dir.glob("coverage/epoch*/coverage.json"))
    if prev:  # wall time of both sessions (each pays the ~30 s start-up)
        wall += prev["wall_s"]
    rec = {"run": run_dir.name, "latent": latent, "batch": batch, "procedure": procedure, "epochs": epochs,
           "iters_per_epoch": iters, "wall_s": round(wall, 1), "coverage_s": round(cov_s, 1),
           "train_wall_s": round(wall - cov_s, 1), "sessions": (prev or {}).get("sessions", 1) + (1 if prev else 0), "threads": a.threads, "load_start": round(load0, 2),
           "load_end": round(os.getloadavg()[0], 2), "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    timing.write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec), flush=True)
    return rec


def _curve(t: dict) -> tuple[str, str, str]:
    return t["latent"], str(t["batch"]), t["procedure"]


def _kept_rows(out: Path, present: list[dict]) -> tuple[list[dict], list[dict]]:
    """The CSV rows and runs.json entries already in `out` of curves that no run folder in `present` (their
    timing.json records) measures: a run folder deleted since, e.g. on another machine, keeps its numbers."""
    measured = {_curve(t) for t in present}
    kept_timings = [t for t in (json.loads((out / "runs.json").read_text()) if (out / "runs.json").exists() else [])
                    if _curve(t) not in measured]
    kept_curves = {_curve(t) for t in kept_timings}
    kept_rows = []
    if (out / "recall_vs_iterations.csv").exists():
        with open(out / "recall_vs_iterations.csv", newline="") as f:
            for r in csv.DictReader(f):
                if (r["latent"], r["batch"], r["procedure"]) in kept_curves:
                    kept_rows.append({k: (v if k in ("latent", "procedure") else float(v) if "." in v else int(v))
                                      for k, v in r.items()})
    return kept_rows, kept_timings


def collect(runs_dir: Path, out: Path) -> list[dict]:
    rows, timings = _kept_rows(out, [json.loads(t.read_text()) for t in runs_dir.glob("*/timing.json")])
    for timing in sorted(runs_dir.glob("*/timing.json")):
        t = json.loads(timing.read_text())
        timings.append(t)
        for p in sorted(timing.parent.glob("coverage/epoch*/coverage.json")):
            c = json.loads(p.read_text())
            row = {"latent": t["latent"], "batch": t["batch"], "procedure": t["procedure"], "epoch": c["epoch"],
                   "iterations": (c["epoch"] + 1) * t["iters_per_epoch"], "poses_read": None}
            row["poses_read"] = row["iterations"] * t["batch"] * (10 if t["procedure"] == "fresh" else 1)
            for split in ("train", "test"):
                for metric in ("recall", "precision"):
                    for stat in ("mean_mm", "median_mm"):
                        row[f"{split}_{metric}_{stat}"] = round(c[split][metric][stat], 1)
            row["num_generated"] = c["sizes"]["num_generated"]
            row["run_train_wall_s"] = t["train_wall_s"]
            rows.append(row)
    rows.sort(key=lambda r: (r["latent"], r["procedure"], r["iterations"]))
    timings.sort(key=lambda t: t["run"])
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        with open(out / "recall_vs_iterations.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    (out / "runs.json").write_text(json.dumps(timings, indent=1))
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"S": "tab:blue", "U": "tab:orange", "N": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80, sharey=True)
    for ax, split in zip(axes, ("train", "test")):
        curves = sorted({(r["latent"], r["batch"], r["procedure"]) for r in rows})
        for latent, batch, proc in curves:
            pts = sorted((r["iterations"], r[f"{split}_recall_mean_mm"], r[f"{split}_recall_median_mm"])
                         for r in rows if (r["latent"], r["batch"], r["procedure"]) == (latent, batch, proc))
            x = [p[0] for p in pts]
            style = dict(color=colors[latent], marker="o" if proc == "authors" else "x",
                         linestyle="-" if proc == "authors" else "none", markersize=4 if proc == "authors" else 8,
                         alpha=1.0 if batch == 64 else 0.6)
            if batch != 64:
                style["linestyle"] = "--"
            ax.plot(x, [p[1] for p in pts], label=f"GAN-{latent} B{batch} {proc} (mean)", **style)
            if proc == "authors":
                ax.plot(x, [p[2] for p in pts], color=colors[latent], linestyle=":", linewidth=1, alpha=0.7)
        ax.set_title(f"{split} recall (mean solid, median dotted)")
        ax.set_xlabel("training iterations")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall, mm (lower is better)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", nargs="+", default=["S", "U", "N"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--iters-per-epoch", type=int, default=500)
    p.add_argument("--num-generated", type=int, default=5000)
    p.add_argument("--num-references", type=int, default=500)
    p.add_argument("--num-precision", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-fresh", action="store_true", help="skip the `fresh` GAN-S reference at the old budget")
    p.add_argument("--runs-dir", default="outputs/bench/embedded_budget_runs")
    p.add_argument("--out", default=str(ROOT / "bench" / "embedded_budget"))
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--resume-to", type=int, default=None,
                   help="continue finished authors runs (named by their first --epochs) to this many epochs")
    a = p.parse_args()
    runs_dir, out = Path(a.runs_dir), Path(a.out)
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not a.collect_only:
        jobs = []
        if not a.no_fresh:  # the earlier procedure at the old budget (batch 64, 10 x 100), coverage at the end only
            jobs.append(("S", 64, "fresh", 10, 100, 10))
        jobs += [(lat, b, "authors", a.epochs, a.iters_per_epoch, 1) for b in a.batch_sizes for lat in a.latents]
        for lat, b, proc, ep, it, every in jobs:
            train(runs_dir / run_name(lat, b, proc, it, ep), lat, b, proc, ep, it, a, every)
            rows = collect(runs_dir, out)
            plot(rows, out / "recall_vs_iterations.png")
    rows = collect(runs_dir, out)
    if rows:
        plot(rows, out / "recall_vs_iterations.png")
        print(f"{len(rows)} rows -> {out / 'recall_vs_iterations.csv'}")


if __name__ == "__main__":
    main()
