"""Runner of `make eval-interp PRIOR=path`: interpolation smoothness (paper Table 2, Fig. 5) of any prior.

Writes to output_dir: interpolation.json (Eq. 6 ratio mean/std/median, pairs and steps, the mean
normalised curve, per-pair ratios and rows), interpolation_curve.png, csv/metrics.csv and the W&B run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from callbacks.interpolation import InterpolationCallback
from experiments.config import ConfigError
from experiments.evaluation import (
    INTERP_COLUMNS,
    body_model_of,
    evaluation_metadata,
    interp_row,
    load_prior_file,
    load_splits,
    require_prior,
    run_test_loop,
)
from experiments.tables import print_table
from experiments.training import prepare_run_dir
from pose_prior.priors import Prior


def evaluate_prior_interpolation(cfg: DictConfig,
                                 prior: Prior | None = None) -> tuple[Path, InterpolationCallback | None]:
    """Run the interpolation evaluation of `cfg.prior` (`prior`: that file, already loaded); returns the run
    folder and, on rank zero, the callback holding the result in memory (`last_stats`, `last_record`); None on
    the other ranks."""
    path = require_prior(cfg, "eval-interp")
    if prior is None:  # loaded before anything is written: a wrong file leaves no output folder
        prior = load_prior_file(path)
    run_dir = prepare_run_dir(cfg)
    sources = load_splits(cfg, ("test",))
    if "test" not in sources:
        raise ConfigError(f"data.prepared_dir={cfg.data.prepared_dir}: the test split is needed for the interpolation evaluation")
    metadata = evaluation_metadata(cfg, path, prior)
    callback = InterpolationCallback.from_config(cfg.interpolation, body_model_of(cfg), sources["test"],
                                                 out_dir=run_dir, run_on_test=True, metadata=metadata)
    trainer = run_test_loop(cfg, run_dir, prior, [callback])
    return run_dir, callback if trainer.is_global_zero else None


def run_eval_interp(cfg: DictConfig) -> Path:
    run_dir, callback = evaluate_prior_interpolation(cfg)
    if callback is not None:
        record = callback.last_record
        print_table(f"Interpolation of {cfg.prior} (Eq. 6, {record['pairs']} pairs, {record['steps']} steps)",
                    ["prior", *INTERP_COLUMNS], [[record["name"], *interp_row(record)]])
        print(f"interpolation.json and curve in {run_dir}")
    return run_dir
