"""Runner of `make eval-generation PRIOR=path`: the generation metrics other pose priors publish.

For each prior and each convention (`generation.conventions`): "dposer-x" (FID, PRDC, APD, dNN on 63-d
axis-angle samples, 50k) and "nrdf" (FID and APD on the 66-d joints 0-21, 500 samples); definitions in
`pose_prior.evaluation.generation`. The train split's statistics are cached beside the prepared split
(`<prepared_dir>/<split>_generation_stats.npz`, keyed by the split file's sha256). Writes output_dir/
generation.json (every number with its convention's definitions) and generation.csv (one row per prior x
convention). Single process: the 50k samples and their distance blocks fit one CPU or GPU.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from experiments.config import to_container
from experiments.evaluation import body_model_of, load_splits, prior_description
from experiments.tables import print_table
from experiments.training import prepare_run_dir
from pose_prior.evaluation.generation import generation_metrics
from pose_prior.evaluation.train_statistics import load_train_statistics
from pose_prior.io import atomic_write_json, atomic_write_text
from pose_prior.priors import load_prior

CSV_COLUMNS = ["name", "convention", "num_samples", "fid", "precision", "recall", "density", "coverage",
               "apd_cm", "dnn", "prior"]


def prior_paths(cfg: DictConfig, target: str) -> list[str]:
    """`prior` and `priors` of the config, in order, each an existing file (or "none" where allowed)."""
    paths = ([cfg.prior] if cfg.prior else []) + list(cfg.priors)
    if not paths:
        raise ValueError(f"no prior given; run `make {target} PRIOR=path/to/prior.pt` (or priors=[...])")
    for p in paths:
        if p != "none" and not Path(p).is_file():
            raise FileNotFoundError(f"prior: {p} does not exist (expected a prior.pt written by a training run)")
    return paths


def split_array(cfg: DictConfig, split: str) -> tuple[Path, np.ndarray]:
    """(path, memmap (N, 63)) of a prepared split (prepared on demand)."""
    sources = load_splits(cfg, (split,))
    if split not in sources:
        raise ValueError(f"{cfg.data.prepared_dir}: split '{split}' is not prepared")
    path = Path(sources[split].path)
    return path, np.load(path, mmap_mode="r")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def run_eval_generation(cfg: DictConfig) -> Path:
    paths = prior_paths(cfg, "eval-generation")
    g = cfg.generation
    run_dir = prepare_run_dir(cfg)
    body_model = body_model_of(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    body_model = body_model.to(device)
    split_path, train = split_array(cfg, g.split)
    cache = Path(cfg.data.prepared_dir) / f"{g.split}_generation_stats.npz"
    stats = load_train_statistics(split_path, cache, num_references=g.num_references, seed=g.seed,
                                  body_model=body_model if "nrdf" in g.conventions else None,
                                  joint_rows=g.joint_stats_rows)
    sizes = {"dposer-x": g.dposer_x_samples, "nrdf": g.nrdf_samples}
    records, rows = [], []
    for path in paths:
        prior = load_prior(path).to(device)
        name = Path(path).parent.name
        for convention in g.conventions:
            if convention not in sizes:
                raise ValueError(f"generation.conventions: unknown {convention!r}; valid: {sorted(sizes)}")
            print(f"{name}: {convention} ({sizes[convention]} samples)")
            m = generation_metrics(prior, body_model, train, num_samples=sizes[convention], convention=convention,
                                   stats=stats, seed=g.seed, k=g.prdc_k, apd_samples=g.apd_samples,
                                   dnn_samples=g.dnn_samples, dnn_database=g.dnn_database, chunk=g.chunk,
                                   knn_backend=g.knn_backend)
            records.append({"name": name, "prior": prior_description(path, prior), **m})
            rows.append({"name": name, **{k: v for k, v in m.items() if k in CSV_COLUMNS}, "prior": path})
    atomic_write_json(run_dir / "generation.json", {
        "split": g.split, "split_file": str(split_path), "split_sha256": stats.sha256, "split_rows": stats.num_rows,
        "body_model": to_container(cfg.body_model), "results": records})
    write_csv(run_dir / "generation.csv", rows, CSV_COLUMNS)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print_table("Generation metrics (labelled conventions)", ["prior", "convention", "FID", "prec.", "recall",
                                                               "density", "coverage", "APD cm", "dNN rad"],
                [[r["name"], r["convention"], *(fmt(r.get(k)) for k in ("fid", "precision", "recall", "density",
                                                                       "coverage", "apd_cm", "dnn"))] for r in rows])
    print(f"generation.json and generation.csv in {run_dir}")
    return run_dir
