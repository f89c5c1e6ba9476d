"""Runner of `make eval-coverage PRIOR=path`: recall and precision (paper Table 1, Fig. 2, Fig. 3) of any prior.

Writes to output_dir: coverage.json (per split: recall and precision mean/std/median in mm, sizes, prior,
body model), coverage_nearest.npz (per-body distances and neighbours), coverage_cdf.png,
coverage_tsne.png, csv/metrics.csv and the W&B run. Several devices: `trainer.devices=N` (Lightning DDP):
each process generates its own share of the bodies and the nearest neighbours are min-reduced.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from callbacks.coverage import CoverageCallback
from experiments.config import ConfigError
from experiments.evaluation import (
    COVERAGE_COLUMNS,
    body_model_of,
    coverage_row,
    evaluation_metadata,
    load_prior_file,
    load_splits,
    require_prior,
    run_test_loop,
)
from experiments.tables import print_table
from experiments.training import prepare_run_dir
from pose_prior.priors import Prior


def evaluate_prior_coverage(cfg: DictConfig, prior: Prior | None = None) -> tuple[Path, CoverageCallback | None]:
    """Run the coverage evaluation of `cfg.prior` (`prior`: that file, already loaded); returns the run folder
    and, on rank zero, the callback holding the result in memory (`last_result`, `last_record`); None on the
    other ranks."""
    path = require_prior(cfg, "eval-coverage")
    if prior is None:  # loaded before anything is written: a wrong file leaves no output folder
        prior = load_prior_file(path)
    run_dir = prepare_run_dir(cfg)
    sources = load_splits(cfg)
    if "train" not in sources:
        raise ConfigError(f"data.prepared_dir={cfg.data.prepared_dir}: the train split is needed for coverage")
    metadata = evaluation_metadata(cfg, path, prior)
    callback = CoverageCallback.from_config(cfg.coverage, body_model_of(cfg), sources, out_dir=run_dir,
                                            run_on_test=True, metadata=metadata)
    trainer = run_test_loop(cfg, run_dir, prior, [callback])
    return run_dir, callback if trainer.is_global_zero else None


def run_eval_coverage(cfg: DictConfig) -> Path:
    run_dir, callback = evaluate_prior_coverage(cfg)
    if callback is not None:
        record = callback.last_record
        print_table(f"Coverage of {cfg.prior} (mm, Eq. 5)", ["prior", *COVERAGE_COLUMNS],
                    [[record["name"], *coverage_row(record)]])
        print(f"coverage.json, CDF and t-SNE plots in {run_dir}")
    return run_dir
