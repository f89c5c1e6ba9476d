"""Runner of `make eval-interp PRIOR=path`: interpolation smoothness (paper Table 2, Fig. 5) of any prior.

Writes to output_dir: interpolation.json (Eq. 6 ratio mean/std/median, pairs and steps, the mean
normalised curve, per-pair ratios and rows), interpolation_curve.png, csv/metrics.csv and the W&B run.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from callbacks.interpolation import InterpolationCallback
from experiments.config import to_container
from experiments.evaluation import (
    INTERP_COLUMNS,
    body_model_of,
    interp_row,
    load_splits,
    print_table,
    prior_description,
    require_prior,
    run_test_loop,
)
from experiments.training import prepare_run_dir
from pose_prior.frozen_prior import load_prior


def interpolation_callback(cfg: DictConfig, body_model, test_poses, out_dir: Path, metadata: dict) -> InterpolationCallback:
    i = cfg.interpolation
    return InterpolationCallback(body_model, test_poses, every_n_epochs=0, num_pairs=i.num_pairs, steps=i.steps,
                                 seed=i.seed, invert_kwargs=to_container(i.invert), batch_size=i.batch_size,
                                 out_dir=out_dir, run_on_test=True, metadata=metadata)


def run_eval_interp(cfg: DictConfig) -> Path:
    path = require_prior(cfg, "eval-interp")
    run_dir = prepare_run_dir(cfg)
    prior = load_prior(path)
    body_model = body_model_of(cfg)
    sources = load_splits(cfg, ("test",))
    if "test" not in sources:
        raise ValueError(f"{cfg.data.prepared_dir}: the test split is needed for the interpolation evaluation")
    metadata = {"prior": prior_description(path, prior), "body_model": to_container(cfg.body_model),
                "name": Path(path).parent.name}
    callback = interpolation_callback(cfg, body_model, sources["test"], run_dir, metadata)
    trainer = run_test_loop(cfg, run_dir, prior, [callback])
    if trainer.is_global_zero:
        record = json.loads((run_dir / "interpolation.json").read_text())
        print_table(f"Interpolation of {path} (Eq. 6, {record['pairs']} pairs, {record['steps']} steps)",
                    ["prior", *INTERP_COLUMNS], [[metadata["name"], *interp_row(record)]])
        print(f"interpolation.json and curve in {run_dir}")
    return run_dir
