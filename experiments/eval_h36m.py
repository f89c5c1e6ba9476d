"""Runner of `make eval-h36m`: fit 2D keypoints of H3.6M Protocol 2 with each prior (and none), Table 3.

For each prior (a prior.pt of any kind, or "none" = raw pose, no prior term), KeypointFittingModule fits
every frame under a Lightning Trainer (DDP across devices, each rank its shard, merged in memory); the
per-frame results are written to `<output_dir>/<prior name>/fits.npz` (body_pose, latent, camera, MPJPE,
P-MPJPE per frame) and the summary to `<output_dir>/h36m.json`, a rich table, the CSV logger and W&B
(offline unless logged in).

With no data configured (data.h36m_file null) the synthetic H3.6M-format file of the embedded default is
made on demand (poses of the prepared AMASS TEST split of the synthetic demo data, open body model).
With no priors configured, every `outputs/runs/*/prior.pt` found is evaluated, plus "none".
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset

from datamodules.h36m.reader import H36MEvalDataset, read_h36m_p2
from datamodules.h36m.synthetic import ensure_synthetic_h36m
from experiments.config import ConfigError, to_container
from experiments.evaluation import body_model_mismatch, prior_description
from experiments.tables import print_table
from experiments.training import build_loggers, build_trainer, finish_loggers, prepare_run_dir
from lightning_modules.keypoint_fitting import KeypointFittingModule
from pose_prior.body_model import load_body_model
from pose_prior.body_model.h36m_regressor import h36m_regressor_for
from pose_prior.io import atomic_savez, atomic_write_json
from pose_prior.priors import NoPrior, load_prior

RUNS_DIR = Path("outputs/runs")
# Table 3 of the paper (P-MPJPE, mm, SMPL on real H3.6M): for reference only, not comparable with open-model runs.
PAPER_TABLE3 = {"GAN-S": 84.3, "GAN-U": 90.7, "GAN-N": 85.4, "VPoser": 90.1, "GMM": 92.3}


def discover_priors(runs_dir: Path = RUNS_DIR) -> list[str]:
    """Every `<runs_dir>/*/prior.pt`, sorted."""
    return sorted(str(p) for p in runs_dir.glob("*/prior.pt"))


def prior_name(entry: str) -> str:
    """'none', or the run folder name of a prior.pt (file stem for other file names)."""
    if entry == "none":
        return "none"
    p = Path(entry)
    return p.parent.name if p.name == "prior.pt" and p.parent.name else p.stem


def prior_list(cfg: DictConfig) -> tuple[list[str], str]:
    """The priors to evaluate and where the list came from."""
    entries = [str(p) for p in cfg.priors]
    source = "config"
    if not entries:
        entries = discover_priors()
        source = f"found in {RUNS_DIR}/*/prior.pt" if entries else f"no prior.pt in {RUNS_DIR}/*/: none only"
    if cfg.include_none and "none" not in entries:
        entries.append("none")
    names = [prior_name(e) for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"priors: several entries are named {dup}; give prior files in distinct run folders")
    return entries, source


def h36m_file(cfg: DictConfig) -> tuple[Path, str]:
    """The P2 file to evaluate (made on demand for the embedded default) and a description."""
    if cfg.data.h36m_file:
        return Path(cfg.data.h36m_file), "H3.6M Protocol 2 file"
    from datamodules.amass.prepare import ensure_prepared, prepare_kwargs_from_config

    syn = cfg.synthetic
    path = Path(syn.file)
    if not path.is_file():
        report = ensure_prepared(**prepare_kwargs_from_config(SimpleNamespace(data=syn.amass, demo=syn.demo)))
        poses = np.load(Path(report.prepared_dir) / "test" / "body_pose.npy", mmap_mode="r")
        ensure_synthetic_h36m(path, cfg.body_model.path, poses, syn.frames, syn.seed, syn.focal, cfg.j_regressor)
    return path, f"synthetic H3.6M-format file (AMASS test poses, body model {cfg.body_model.path})"


def run_demo_h36m(cfg: DictConfig) -> Path:
    """`make demo-h36m`: write the synthetic H3.6M-format file (synthetic.file) if it does not exist."""
    path, what = h36m_file(_without_data(cfg))
    print(f"{what}: {path}")
    return path


def _without_data(cfg: DictConfig) -> DictConfig:
    if cfg.data.h36m_file:
        print("demo-h36m writes the synthetic file; data.h36m_file is ignored")
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    c["data"]["h36m_file"] = None
    return OmegaConf.create(c)


FITTING_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fitting_dtype(name: str) -> torch.dtype:
    """The `dtype` key: float32 (fast) or float64 (per-frame results independent of batching and of the
    process count to the last bits, at ~1.3x the time on the CPU)."""
    if name not in FITTING_DTYPES:
        raise ConfigError(f"dtype={name!r}: expected one of {sorted(FITTING_DTYPES)}")
    return FITTING_DTYPES[name]


def _load(entry: str, dtype: torch.dtype = torch.float32) -> Any:
    """None for "none", else the prior file (any registered kind) in `dtype`."""
    if entry == "none":
        return None
    try:
        return load_prior(entry).to(dtype)
    except (FileNotFoundError, ValueError) as exc:  # a folder, a checkpoint, a diverged run's file: the user's
        raise ConfigError(f"priors: {entry}: {exc}") from exc


def evaluate_prior(cfg: DictConfig, entry: str, dataset, j_reg: np.ndarray, body_model, out_dir: Path) -> dict:
    """Fit every frame with one prior; returns its summary (rank 0, {} elsewhere) after writing fits.npz."""
    prior = _load(entry, body_model.dtype)
    module = KeypointFittingModule(prior, body_model, j_reg, layout=dataset.data.layout,
                                   settings=to_container(cfg.fitting), crop_res=cfg.data.crop_res)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    trainer = build_trainer(cfg, out_dir, [], [], inference_mode=False, max_epochs=1, limit_test_batches=None)
    start = time.perf_counter()
    trainer.test(module, dataloaders=loader, verbose=False)
    seconds = time.perf_counter() - start
    if trainer.global_rank != 0:
        return {}
    fits = module.fits
    if fits is None or fits["index"].shape[0] != len(dataset):
        got = 0 if fits is None else fits["index"].shape[0]
        raise RuntimeError(f"keypoint fitting returned results for {got} frames, expected {len(dataset)}")
    atomic_savez(out_dir / "fits.npz", **fits)
    trained: dict[str, Any] = {}
    if prior is not None:  # where its training stopped, its body model; a warning if it is not this one
        description = prior_description(entry, prior)
        trained = {k: description[k] for k in ("trained_epochs", "trained_global_step", "trained_with_body_model")}
        warning = body_model_mismatch(cfg, description)
        if warning:
            print(warning)
            trained["body_model_warning"] = warning
    return {
        "prior": entry,
        **(NoPrior() if prior is None else prior).describe(),
        **trained,
        "frames": int(fits["index"].shape[0]),
        "p_mpjpe_mm": float(fits["p_mpjpe"].mean()),
        "mpjpe_mm": float(fits["mpjpe"].mean()),
        "p_mpjpe_median_mm": float(np.median(fits["p_mpjpe"])),
        "mean_iterations": float(fits["iterations"].mean()),
        "mean_evaluations": float(fits["evaluations"].mean()),
        "flipped_fraction": float(fits["flipped"].mean()),
        "seconds": seconds,
        "frames_per_second": float(fits["index"].shape[0] / max(seconds, 1e-9)),
        # the fit alone (fit_keypoints calls; no data loading, metrics or Trainer overhead), same frames and
        # settings for every prior
        "fit_seconds": module.fit_seconds,
        "fit_seconds_per_100_frames": 100.0 * module.fit_seconds / fits["index"].shape[0],
        "fits": str(out_dir / "fits.npz"),
    }


H36M_COLUMNS = ["prior", "frames", "P-MPJPE (mm)", "MPJPE (mm)", "median P-MPJPE", "fit s/100 frames",
                "iterations", "frames/s"]


def h36m_row(name: str, r: dict) -> list[str]:
    """Table-3 cells of one prior's summary."""
    return [name, str(r["frames"]), f"{r['p_mpjpe_mm']:.1f}", f"{r['mpjpe_mm']:.1f}",
            f"{r['p_mpjpe_median_mm']:.1f}", f"{r['fit_seconds_per_100_frames']:.2f}", f"{r['mean_iterations']:.1f}",
            f"{r['frames_per_second']:.1f}"]


def run_eval_h36m(cfg: DictConfig) -> Path:
    dtype = fitting_dtype(cfg.dtype)
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.trainer.accelerator in ("cpu", "auto") and not torch.cuda.is_available():
        torch.set_num_threads(1)  # fitting is many small ops: one thread per process (DDP for parallelism)
    run_dir = prepare_run_dir(cfg)
    entries, source = prior_list(cfg)
    path, what = h36m_file(cfg)
    data = read_h36m_p2(path, cfg.data.h36m_keypoints, cfg.data.keypoint_key)
    body_model = load_body_model(cfg.body_model.path, model_type="smpl", gender=cfg.body_model.gender, dtype=dtype)
    j_reg = h36m_regressor_for(cfg.body_model.path, cfg.j_regressor, body_model.num_vertices)
    dataset = H36MEvalDataset(data, dtype=body_model.dtype)
    if cfg.data.max_frames is not None:
        dataset = _subset(dataset, int(cfg.data.max_frames))
    print(f"H3.6M P2 evaluation on {what}: {path} ({len(dataset)} frames, keypoints {data.keypoint_source}); "
          f"priors ({source}): {', '.join(prior_name(e) for e in entries)}")

    results: dict[str, dict] = {}
    for entry in entries:
        name = prior_name(entry)
        summary = evaluate_prior(cfg, entry, dataset, j_reg, body_model, run_dir / name)
        if summary:
            results[name] = summary
    if not results:  # non-zero ranks
        return run_dir
    report = {
        "protocol": "H3.6M Protocol 2 (14 joints, pelvis-centred, per-frame Procrustes), mm",
        "data": {"file": str(path), "description": what, "keypoints": data.keypoint_source,
                 "frames": len(dataset), "synthetic": not bool(cfg.data.h36m_file)},
        "body_model": cfg.body_model.path,
        "j_regressor": cfg.j_regressor or f"open model's own ({cfg.body_model.path})",
        "priors_source": source,
        "settings": to_container(cfg.fitting),
        "dtype": cfg.dtype,
        "results": results,
        "paper_table3_p_mpjpe_mm": PAPER_TABLE3,
        "comparable_with_paper": False if cfg.body_model.path in ("open", "open-light") else None,
    }
    atomic_write_json(run_dir / "h36m.json", report)
    print_table(f"H3.6M Protocol 2 keypoint fitting ({'synthetic' if not cfg.data.h36m_file else 'H3.6M'})",
                H36M_COLUMNS, [h36m_row(name, r) for name, r in results.items()])
    metrics = {f"h36m/{n}/{k}": r[k] for n, r in results.items()
               for k in ("p_mpjpe_mm", "mpjpe_mm", "frames", "fit_seconds_per_100_frames")}
    loggers = build_loggers(cfg, run_dir)
    for logger in loggers:
        logger.log_metrics(metrics, step=0)
    finish_loggers(loggers)
    print(f"results: {run_dir / 'h36m.json'}")
    return run_dir


class _SubsetDataset(Subset):
    """A prefix of an H36MEvalDataset that keeps `.data` (the layout) visible."""

    def __init__(self, dataset: H36MEvalDataset, n: int) -> None:
        super().__init__(dataset, list(range(min(n, len(dataset)))))
        self.data = dataset.data


def _subset(dataset: H36MEvalDataset, n: int) -> _SubsetDataset:
    return _SubsetDataset(dataset, n)


__all__ = ["run_eval_h36m", "run_demo_h36m", "discover_priors", "prior_name"]
