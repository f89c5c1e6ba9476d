"""Runner of `make eval-generation PRIOR=path`: the generation metrics other pose priors publish.

For each prior and each convention (`generation.conventions`): "dposer-x" (FID, PRDC, APD, dNN on 63-d
axis-angle samples, 50k) and "nrdf" (FID and APD on the 66-d joints 0-21, 500 samples); definitions in
`pose_prior.evaluation.generation`. The train split's statistics are cached beside the prepared split
(`<prepared_dir>/<split>_generation_stats.npz`, keyed by the split file's sha256). Writes output_dir/
generation.json (every number with its convention's definitions), generation.csv (one row per prior x
convention) and a W&B run with the same table. Several devices (`trainer.devices=N`, Lightning DDP): each
process generates its seeded share of the samples, the shares are gathered into the set one process would
draw, and rank zero computes the metrics on it (`callbacks.generation.GenerationCallback`). `make compare`
runs the same callback for its generation columns (`evaluate_prior_generation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from callbacks.generation import GenerationCallback, GenerationSettings
from experiments.config import ConfigError, to_container
from experiments.evaluation import (
    body_model_of,
    evaluation_metadata,
    load_prior_file,
    load_splits,
    log_wandb_table,
    run_test_loop,
    sub_task_config,
)
from experiments.tables import print_table, write_csv
from experiments.training import prepare_run_dir
from pose_prior.io import atomic_write_json
from pose_prior.priors import Prior

CSV_COLUMNS = ["name", "convention", "num_samples", "fid", "precision", "recall", "density", "coverage",
               "apd_cm", "dnn", "prior"]
TABLE_KEYS = ("fid", "precision", "recall", "density", "coverage", "apd_cm", "dnn")


def prior_paths(cfg: DictConfig, target: str) -> list[str]:
    """`prior` and `priors` of the config, in order, each an existing file (or "none" where allowed)."""
    paths = ([cfg.prior] if cfg.prior else []) + list(cfg.priors)
    if not paths:
        raise ValueError(f"no prior given; run `make {target} PRIOR=path/to/prior.pt` (or priors=[...])")
    for p in paths:
        if p != "none" and not Path(p).is_file():
            raise FileNotFoundError(f"prior: {p} does not exist (expected a prior.pt written by a training run)")
    return paths


def split_file(cfg: DictConfig, split: str) -> Path:
    """The (N, 63) .npy file of a prepared split (prepared on demand)."""
    sources = load_splits(cfg, (split,))
    if split not in sources:
        raise ConfigError(f"data.prepared_dir={cfg.data.prepared_dir}: split '{split}' (generation.split) is not prepared")
    return Path(sources[split].path)


def split_array(cfg: DictConfig, split: str) -> tuple[Path, np.ndarray]:
    """(path, memmap (N, 63)) of a prepared split (prepared on demand)."""
    path = split_file(cfg, split)
    return path, np.load(path, mmap_mode="r")


def evaluate_prior_generation(cfg: DictConfig, path: str, name: str | None = None, out_dir: Path | None = None,
                              prior: Prior | None = None) -> list[dict[str, Any]] | None:
    """The generation metrics of the prior file `path` under every convention of `cfg.generation`, through
    a test loop on `cfg.trainer`'s devices; `cfg` is an eval-generation or compare config. Returns, on rank
    zero, one record per convention (name, prior description, metrics); None on the other ranks. With
    `out_dir`, rank zero also writes out_dir/generation.json. `prior`: the file at `path`, already loaded."""
    if prior is None:
        prior = load_prior_file(path)
    settings = GenerationSettings.from_config(cfg.generation)
    # no CSV logger of its own either: the runner writes generation.csv once
    sub = sub_task_config(cfg, "eval-generation", "generation", csv_logger=False, prior=path,
                          output_dir=str(out_dir or cfg.output_dir))
    metadata = evaluation_metadata(sub, path, prior)
    name = name or metadata["name"]
    callback = GenerationCallback(body_model_of(sub), split_file(sub, settings.split), settings,
                                  cache_path=Path(sub.data.prepared_dir) / f"{settings.split}_generation_stats.npz",
                                  out_dir=out_dir, run_on_test=True, metadata={**metadata, "name": name})
    trainer = run_test_loop(sub, Path(sub.output_dir), prior, [callback])
    if not trainer.is_global_zero:
        return None
    return [{"name": name, "prior": metadata["prior"], **r} for r in callback.last_records]


def generation_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """generation.csv rows: one per prior x convention."""
    return [{"name": r["name"], **{k: v for k, v in r.items() if k in CSV_COLUMNS and k not in ("name", "prior")},
             "prior": r["prior"]["path"]} for r in records]


def run_eval_generation(cfg: DictConfig) -> Path:
    paths = prior_paths(cfg, "eval-generation")
    GenerationSettings.from_config(cfg.generation)  # a wrong convention fails before any work
    run_dir = prepare_run_dir(cfg)
    records: list[dict[str, Any]] = []
    for path in paths:
        got = evaluate_prior_generation(cfg, path)
        if got is None:  # not rank zero
            continue
        records += got
    if not records:
        return run_dir
    g = cfg.generation
    first = records[0]
    atomic_write_json(run_dir / "generation.json", {
        "split": g.split, "split_sha256": first["train_sha256"], "split_rows": first["train_rows"],
        "body_model": to_container(cfg.body_model), "results": records})
    rows = generation_rows(records)
    write_csv(run_dir / "generation.csv", rows, CSV_COLUMNS)
    log_wandb_table(cfg, run_dir, "generation", CSV_COLUMNS, rows)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print_table("Generation metrics (labelled conventions)", ["prior", "convention", "FID", "prec.", "recall",
                                                               "density", "coverage", "APD cm", "dNN rad"],
                [[r["name"], r["convention"], *(fmt(r.get(k)) for k in TABLE_KEYS)] for r in rows])
    print(f"generation.json and generation.csv in {run_dir}")
    return run_dir

