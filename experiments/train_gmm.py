"""Runner of `make train-gmm`: fit the GMM baseline on the prepared AMASS train split, or convert gmm_08.pkl.

Fitting reads a seeded subsample of the train split straight from its memory map (sorted row ids, so
only those rows are read; the whole array is never loaded), fits K full-covariance Gaussians with
scikit-learn's EM (`pose_prior.priors.gmm.model.fit_gmm`, float64), and writes to `output_dir`:
  prior.pt       kind "gmm" (`pose_prior.priors.gan.prior.load_prior`)
  gmm_fit.json   rows used, mean log-likelihood per sample on the train subsample and the valid split, seconds
  config.yaml    the resolved config
With `gmm.smplify_pkl` set, SMPLify's published 69-d mixture is converted to the 63-d body pose instead
(`gmm.reduce`: marginalise | zero_pad) and no data are read.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from datamodules.amass.datamodule import AmassDataModule, PoseArrayDataset
from experiments.config import to_container
from experiments.training import prepare_run_dir
from pose_prior.io import atomic_write_json
from pose_prior.priors import GMMPrior
from pose_prior.priors.gmm.model import GaussianMixturePrior, fit_gmm
from pose_prior.rows import sample_rows

REDUCTIONS = ("marginalise", "zero_pad")


def read_rows(dataset: PoseArrayDataset, ids: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """(len(ids), 63) float64 rows of a memory-mapped split, gathered chunk by chunk (sorted ids)."""
    out = np.empty((len(ids), 63), dtype=np.float64)
    for start in range(0, len(ids), chunk):
        out[start:start + chunk] = dataset[ids[start:start + chunk]].numpy()
    return out


def mean_log_likelihood(gmm: GaussianMixturePrior, poses: np.ndarray, chunk: int = 1 << 16) -> float:
    """Mean over rows of log sum_k w_k N(pose; mu_k, Sigma_k), float64, evaluated in chunks."""
    total = 0.0
    for start in range(0, len(poses), chunk):
        total += float(gmm.log_prob(torch.from_numpy(poses[start:start + chunk])).sum())
    return total / max(len(poses), 1)


def covariance_spectrum(gmm: GaussianMixturePrior) -> dict[str, float]:
    """Smallest, median and largest eigenvalue over all components' covariances (rad^2): a fitted mixture's
    smallest should not sit at the floor `reg_covar` (collapse); for SMPLify's published mixture it says what
    floor that mixture implies."""
    eig = torch.linalg.eigvalsh(gmm.covariances.double()).flatten()
    return {"min": float(eig.min()), "median": float(eig.median()), "max": float(eig.max())}


def _split_or_none(dm: AmassDataModule, split: str) -> tuple[PoseArrayDataset | None, str | None]:
    try:
        return dm.dataset(split), None
    except (KeyError, ValueError) as err:
        return None, str(err)


def fit_on_train_split(cfg: DictConfig) -> tuple[GMMPrior, dict[str, Any]]:
    """Fit the GMM on the seeded train subsample; returns the prior and the gmm_fit.json record."""
    g = cfg.gmm
    t0 = time.perf_counter()
    dm = AmassDataModule.from_config(cfg)
    dm.prepare_data()
    train = dm.dataset("train")
    ids = sample_rows(len(train), g.max_samples, cfg.seed)
    poses = read_rows(train, ids)  # (n, 63) float64
    t_read = time.perf_counter()
    with threadpool_limits(limits=g.num_threads):  # None leaves the BLAS thread count alone
        gmm = fit_gmm(poses, n_components=g.n_components, seed=cfg.seed, max_iter=g.max_iter, tol=g.tol,
                      reg_covar=g.reg_covar, n_init=g.n_init)
    t_fit = time.perf_counter()
    record: dict[str, Any] = {
        "mode": "fit",
        "n_components": int(g.n_components),
        "seed": int(cfg.seed),
        "train_rows": len(train),
        "n_used": len(ids),
        "reg_covar": float(g.reg_covar),
        "covariance_eigenvalues": covariance_spectrum(gmm),
        "loglik_per_sample": {"train": mean_log_likelihood(gmm, poses)},
        "n_scored": {"train": len(ids)},
    }
    valid, why = _split_or_none(dm, "valid")
    if valid is None:
        record["loglik_per_sample"]["valid"] = None
        record["valid_skipped"] = why
    else:
        vids = sample_rows(len(valid), g.eval_max_samples, cfg.seed)
        record["loglik_per_sample"]["valid"] = mean_log_likelihood(gmm, read_rows(valid, vids))
        record["n_scored"]["valid"] = len(vids)
    record["seconds"] = {"read": t_read - t0, "fit": t_fit - t_read, "total": time.perf_counter() - t0}
    provenance = {
        "trainer": "fit_gmm (scikit-learn EM, full covariances)",
        "config": to_container(cfg),
        "data": {"amass_dir": cfg.data.amass_dir or f"synthetic demo tree ({cfg.data.demo_dir})",
                 "prepared_dir": cfg.data.prepared_dir, "split": "train", "n_used": len(ids)},
        "fit": {k: v for k, v in record.items() if k != "seconds"},
    }
    return GMMPrior(gmm, provenance), record


def convert_smplify(cfg: DictConfig) -> tuple[GMMPrior, dict[str, Any]]:
    """SMPLify's gmm_08.pkl reduced to the 63-d body pose; returns the prior and the gmm_fit.json record."""
    g = cfg.gmm
    path = os.fspath(g.smplify_pkl)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gmm.smplify_pkl: {path} does not exist (expected SMPLify's gmm_08.pkl)")
    t0 = time.perf_counter()
    prior = GMMPrior.from_smplify(path, reduce=g.reduce)
    prior.provenance["config"] = to_container(cfg)
    record = {
        "mode": "smplify",
        "source": path,
        "reduce": str(g.reduce),
        "n_components": prior.gmm.num_components,
        "model_dim": prior.gmm.model_dim,
        "covariance_eigenvalues": covariance_spectrum(prior.gmm),
        "seconds": {"total": time.perf_counter() - t0},
    }
    return prior, record


def run_train_gmm(cfg: DictConfig) -> Path:
    if cfg.gmm.reduce not in REDUCTIONS:
        raise ValueError(f"gmm.reduce: expected one of {REDUCTIONS}, got {cfg.gmm.reduce!r}")
    run_dir = prepare_run_dir(cfg)
    prior, record = convert_smplify(cfg) if cfg.gmm.smplify_pkl else fit_on_train_split(cfg)
    prior.save(run_dir / "prior.pt")
    atomic_write_json(run_dir / "gmm_fit.json", record)
    ll = record.get("loglik_per_sample", {})
    summary = ", ".join(f"{k} {v:.2f}" for k, v in ll.items() if v is not None and math.isfinite(v))
    print(f"run folder: {run_dir}  prior: {run_dir / 'prior.pt'}" + (f"  log-lik/sample: {summary}" if summary else ""))
    return run_dir



