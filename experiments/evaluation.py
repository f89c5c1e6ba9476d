"""Shared plumbing of the prior evaluations: the splits, the prior's description, the test-loop Trainer, table rows."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from datamodules.amass.datamodule import AmassDataModule
from experiments.training import build_loggers, build_trainer, finish_loggers
from lightning_modules.prior_evaluation import PriorEvaluationModule, dummy_loader
from pose_prior.body_model import load_body_model
from pose_prior.priors import Prior


def require_prior(cfg: DictConfig, target: str) -> str:
    """The prior path of the config, or a clear error naming the key and the make variable."""
    if not cfg.prior:
        raise ValueError(f"prior: no prior file given; run `make {target} PRIOR=path/to/prior.pt` (or prior=...)")
    if not os.path.isfile(cfg.prior):
        raise FileNotFoundError(f"prior: {cfg.prior} does not exist (expected a prior.pt written by a training run)")
    return str(cfg.prior)


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
    """{path, kind, latent} of a loaded prior file."""
    return {"path": os.path.abspath(path), **prior.describe()}


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
