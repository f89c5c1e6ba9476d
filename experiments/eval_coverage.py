"""Runner of `make eval-coverage PRIOR=path`: recall and precision (paper Table 1, Fig. 2, Fig. 3) of any prior.

Writes to output_dir: coverage.json (per split: recall and precision mean/std/median in mm, sizes, prior,
body model), coverage_nearest.npz (per-body distances and neighbours), coverage_cdf.png,
coverage_tsne.png, csv/metrics.csv and the W&B run. Several devices: `trainer.devices=N` (Lightning DDP):
each process generates its own share of the bodies and the nearest neighbours are min-reduced.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from callbacks.coverage import CoverageCallback
from experiments.config import to_container
from experiments.evaluation import (
    COVERAGE_COLUMNS,
    body_model_of,
    coverage_row,
    load_splits,
    print_table,
    prior_description,
    require_prior,
    run_test_loop,
)
from experiments.training import prepare_run_dir
from pose_prior.frozen_prior import load_prior


def nearest_kwargs(c: DictConfig) -> dict:
    """Settings of the exact nearest-neighbour search (pose_prior.nearest) from the coverage config."""
    return {"levels": tuple(c.nearest_levels)} if c.nearest_levels else {}


def coverage_callback(cfg: DictConfig, body_model, sources: dict, out_dir: Path, metadata: dict) -> CoverageCallback:
    c = cfg.coverage
    return CoverageCallback(body_model, sources, every_n_epochs=0, num_generated=c.num_generated,
                            num_references=c.num_references, num_precision=c.num_precision,
                            chunk_size=c.chunk_size, seed=c.seed, precision_database=c.precision_database,
                            tsne_points=c.tsne_points, tsne_perplexity=c.tsne_perplexity, out_dir=out_dir,
                            run_on_test=True, metadata=metadata, nearest_kwargs=nearest_kwargs(c))


def run_eval_coverage(cfg: DictConfig) -> Path:
    path = require_prior(cfg, "eval-coverage")
    run_dir = prepare_run_dir(cfg)
    prior = load_prior(path)
    body_model = body_model_of(cfg)
    sources = load_splits(cfg)
    if "train" not in sources:
        raise ValueError(f"{cfg.data.prepared_dir}: the train split is needed for coverage")
    metadata = {"prior": prior_description(path, prior), "body_model": to_container(cfg.body_model),
                "name": Path(path).parent.name}
    trainer = run_test_loop(cfg, run_dir, prior, [coverage_callback(cfg, body_model, sources, run_dir, metadata)])
    if trainer.is_global_zero:
        summary = json.loads((run_dir / "coverage.json").read_text())
        print_table(f"Coverage of {path} (mm, Eq. 5)", ["prior", *COVERAGE_COLUMNS],
                    [[metadata["name"], *coverage_row(summary)]])
        print(f"coverage.json, CDF and t-SNE plots in {run_dir}")
    return run_dir
