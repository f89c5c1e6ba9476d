"""Runner of `make eval-interp PRIOR=path`: interpolation smoothness (paper Table 2, Fig. 5) of any prior.

Writes to output_dir: interpolation.json (Eq. 6 ratio mean/std/median, pairs and steps, the mean
normalised curve, per-pair ratios and rows), interpolation_curve.png, csv/metrics.csv and the W&B run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from callbacks.interpolation import InterpolationCallback
from experiments.config import to_container
from experiments.evaluation import (
    INTERP_COLUMNS,
    body_model_of,
    interp_row,
    load_splits,
    prior_description,
    require_prior,
    run_test_loop,
)
from experiments.tables import print_table
from experiments.training import prepare_run_dir
from pose_prior.priors import load_prior


def evaluate_prior_interpolation(cfg: DictConfig) -> tuple[Path, InterpolationCallback | None]:
    """Run the interpolation evaluation of `cfg.prior`; returns the run folder and, on rank zero, the
    callback holding the result in memory (`last_stats`, `last_record`); None on the other ranks."""
    path = require_prior(cfg, "eval-interp")
    run_dir = prepare_run_dir(cfg)
    prior = load_prior(path)
    sources = load_splits(cfg, ("test",))
    if "test" not in sources:
        raise ValueError(f"{cfg.data.prepared_dir}: the test split is needed for the interpolation evaluation")
    metadata = {"prior": prior_description(path, prior), "body_model": to_container(cfg.body_model),
                "name": Path(path).parent.name}
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
