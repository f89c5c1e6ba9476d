"""Shared plumbing of the prior evaluations: the splits, the prior's description, sub-task configs, the test-loop
Trainer, table rows and their W&B table."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.amass.datamodule import AmassDataModule
from experiments.config import ConfigError, to_container
from experiments.tasks import TASKS
from experiments.training import build_loggers, build_trainer, finish_loggers, say
from lightning_modules.prior_evaluation import PriorEvaluationModule, dummy_loader
from pose_prior.body_model import load_body_model
from pose_prior.priors import Prior, load_prior


def require_prior(cfg: DictConfig, target: str) -> str:
    """The prior path of the config, or a clear error naming the key and the make variable."""
    if not cfg.prior:
        raise ConfigError(f"prior: no prior file given; run `make {target} PRIOR=path/to/prior.pt` (or prior=...)")
    if not os.path.exists(cfg.prior):
        raise ConfigError(f"prior={cfg.prior}: no such file (expected a prior.pt written by a training run)")
    return str(cfg.prior)


def load_prior_file(path: str, key: str = "prior") -> Prior:
    """`load_prior`, with a file that is not a loadable prior (a folder, a checkpoint, a diverged run's
    file) reported as the user's error naming the key; the loader's own hint says what to pass instead."""
    try:
        return load_prior(path)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        raise ConfigError(f"{key}={path}: {exc}") from exc


def load_splits(cfg: DictConfig, splits: Sequence[str] = ("train", "test")) -> dict[str, Any]:
    """{split: PoseArrayDataset (memory-mapped (N, 63))} of the prepared AMASS data (prepared on demand)."""
    dm = AmassDataModule.from_config(cfg)
    dm.prepare_data()
    out = {}
    for split in splits:
        try:
            out[split] = dm.dataset(split)
        except (KeyError, ValueError) as err:
            print(f"skipping split {split}: {err}")
    return out


def body_model_of(cfg: DictConfig) -> torch.nn.Module:
    bm = cfg.body_model
    return load_body_model(bm.path, model_type=bm.model_type, gender=bm.gender)


def prior_description(path: str, prior: Prior) -> dict[str, Any]:
    """{path, kind, latent, ...} of a loaded prior file, with where its training stopped (epochs completed,
    optimiser steps) and the body model it was trained with, from its provenance."""
    prov = prior.provenance or {}
    trained = {"trained_epochs": prov.get("epochs_completed"), "trained_global_step": prov.get("global_step")}
    if trained["trained_epochs"] is None and isinstance(prov.get("epoch"), int):  # files of older exports
        trained["trained_epochs"] = prov["epoch"] + 1
    body = ((prov.get("config") or {}).get("body_model")) or None
    return {"path": os.path.abspath(path), **prior.describe(), **trained, "trained_with_body_model": body}


def body_model_mismatch(cfg: DictConfig, description: Mapping[str, Any]) -> str | None:
    """A warning when the evaluation's body model differs from the one the prior was trained with
    (distances in mm then mix two skeletons)."""
    trained = description.get("trained_with_body_model")
    if not trained:
        return None
    now = {k: cfg.body_model[k] for k in ("path", "model_type") if k in cfg.body_model}
    diff = [f"{k}: trained {trained.get(k)!r}, evaluated {v!r}" for k, v in now.items()
            if k in trained and trained.get(k) != v]
    if not diff:
        return None
    return (f"warning: {description.get('path')} was trained with another body model than this evaluation uses "
            f"({'; '.join(diff)}); set body_model.path / body_model.model_type to match for comparable numbers")


def evaluation_metadata(cfg: DictConfig, path: str, prior: Prior) -> dict[str, Any]:
    """What an evaluation's results file records about its inputs; prints the body-model warning."""
    description = prior_description(path, prior)
    warning = body_model_mismatch(cfg, description)
    if warning:
        say(warning)
    return {"prior": description, "body_model": to_container(cfg.body_model), "name": Path(path).parent.name,
            **({"body_model_warning": warning} if warning else {})}


def sub_task_config(cfg: DictConfig, task: str, section: str, *, csv_logger: bool = True, **changes: Any
                    ) -> DictConfig:
    """A read-only `task` config for one prior's evaluation inside a runner (compare, eval-generation): the
    runner's data, demo, body model, trainer and sizes section `section`, then `changes` (prior, output_dir).
    No W&B run of its own (the runner logs once); its CSV logger only with `csv_logger`."""
    logger = {**to_container(cfg.logger), "wandb_mode": "disabled", **({} if csv_logger else {"csv": False})}
    node = OmegaConf.merge(OmegaConf.structured(TASKS[task].schema), {
        "output_dir": cfg.output_dir, "data": cfg.data, "demo": cfg.demo, "body_model": cfg.body_model,
        section: cfg[section], "trainer": cfg.trainer, "logger": logger, **changes})
    OmegaConf.set_readonly(node, True)
    return node


def log_wandb_table(cfg: DictConfig, run_dir: Path, key: str, columns: Sequence[str],
                    rows: Sequence[Mapping[str, Any]], images: Sequence[str] = ()) -> None:
    """`rows` as one W&B table `key` (a column per name of `columns`; offline unless logged in), with `images`
    under `key`/plots, through the loggers of `cfg` (a CSV logger gets nothing: the runner writes its CSV)."""
    from pytorch_lightning.loggers import WandbLogger

    loggers = build_loggers(cfg, run_dir)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=[[r.get(c) for c in columns] for r in rows])
            if images:
                logger.log_image(key=f"{key}/plots", images=list(images))
    finish_loggers(loggers)


def run_test_loop(cfg: DictConfig, run_dir: Path, prior: torch.nn.Module, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """`trainer.test` of a PriorEvaluationModule over one dummy batch per rank; the callbacks do the work.

    inference_mode is off: inversion needs gradients. The devices / strategy come from cfg.trainer.
    """
    trainer = build_trainer(cfg, run_dir, callbacks, build_loggers(cfg, run_dir), inference_mode=False,
                            max_epochs=1, limit_test_batches=1, enable_checkpointing=False)
    trainer.test(PriorEvaluationModule(prior), dataloaders=dummy_loader(), verbose=False)
    finish_loggers(trainer.loggers)
    return trainer


def fmt(stats: Mapping[str, float], key: str = "mean_mm") -> str:
    return f"{stats[key]:.1f} ± {stats['std_mm']:.1f}"


def coverage_row(summary: Mapping[str, Any]) -> list[str]:
    """Table-1 cells: recall mean±std, median, precision mean±std, median per split (mm)."""
    cells = []
    for split in ("train", "test"):
        if split not in summary:
            cells += ["-"] * 4
            continue
        rec, pre = summary[split]["recall"], summary[split]["precision"]
        cells += [fmt(rec), f"{rec['median_mm']:.1f}", fmt(pre), f"{pre['median_mm']:.1f}"]
    return cells


COVERAGE_COLUMNS = ["train recall", "median", "train precision", "median",
                    "test recall", "median", "test precision", "median"]
INTERP_COLUMNS = ["interp. ratio", "median"]


def interp_row(record: Mapping[str, Any]) -> list[str]:
    return [f"{record['ratio_mean']:.2f} ± {record['ratio_std']:.2f}", f"{record['ratio_median']:.2f}"]
