"""Runners of `make train-regressor` and `make eval-regressor` (paper Sec. 4.4, Table 4).

train: EFT JSON + images (or the synthetic images) -> ImageRegressionModule around a frozen GAN or VPoser prior and a
frozen HMR/EFT ResNet-50 -> run folder (config.yaml, checkpoints/, predictions/*.png, csv/, W&B offline).
eval: a checkpoint -> H3.6M Protocol 2 from images (MPJPE, P-MPJPE via pose_prior.evaluation.metrics3d.h36m_p2_errors
with a 17-joint regressor of the body model) -> regression.json, CSV, W&B, a grid of predicted meshes.
With no H3.6M file the synthetic held-out split is evaluated instead, with the body model's own joints as
a stand-in regressor; regression.json says so in `benchmark`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from callbacks.regression_grid import PredictionGridCallback, log_grid, prediction_overlays, save_grid
from datamodules.eft_coco import AugmentSettings, EftDataModule
from datamodules.eft_demo import write_demo_images
from datamodules.h36m.images import H36MImageDataset
from experiments.config import ConfigError, save_config, to_container
from experiments.training import build_loggers, finish_loggers, fit, prepare_run_dir, say
from lightning_modules.image_regression import ImageRegressionModule
from pose_prior.body_model.h36m_regressor import load_h36m_regressor
from pose_prior.evaluation.metrics3d import h36m_p2_errors
from pose_prior.hmr import calibrate_batchnorm, load_hmr_checkpoint, load_mean_params
from pose_prior.io import atomic_write_json
from pose_prior.priors import Prior, load_prior

NEED_PRIOR = (
    "train-regressor needs a trained GAN or VPoser prior file: pass PRIOR=path (make train-regressor "
    "PRIOR=outputs/runs/gan_s/prior.pt) or prior.path=path; `make train-gan-s` writes outputs/runs/gan_s/prior.pt, "
    "`make train-vposer` outputs/runs/vposer/prior.pt"
)
SYNTHETIC_BENCHMARK = (
    "SYNTHETIC held-out split (rendered open-model bodies), NOT Human3.6M: Protocol-2 code path with the body "
    "model's own kinematic joints as a stand-in 17-joint regressor (J_regressor_standin.npy), 14 LSP joints"
)


def _demo_root(cfg: DictConfig) -> Path:
    d = cfg.demo_images
    return write_demo_images(cfg.data.demo_dir, cfg.body_model.path, d.num_train, d.num_val, d.image_size, d.seed,
                             force=bool(d.force))


def build_regressor_datamodule(cfg: DictConfig) -> EftDataModule:
    data = cfg.data
    if data.train_json is None:
        root = _demo_root(cfg)
        train_json, val_json, image_dir, val_dir = root / "train.json", root / "val.json", root / "images", None
    else:
        if data.image_dir is None:
            raise ConfigError("data.train_json is set but data.image_dir is not: give the folder of the images "
                              "that the JSON's imageName entries name (e.g. coco/train2014)")
        train_json, val_json, image_dir, val_dir = data.train_json, data.val_json, data.image_dir, data.val_image_dir
    return EftDataModule(str(train_json), str(val_json) if val_json else None, str(image_dir),
                         str(val_dir) if val_dir else None, batch_size=data.batch_size, num_workers=data.num_workers,
                         augment=AugmentSettings(**to_container(data.augment)),
                         max_train_samples=data.max_train_samples, max_val_samples=data.max_val_samples)


def load_regression_prior(path: str | None) -> Prior:
    if path is None:
        raise ConfigError(NEED_PRIOR)
    if not Path(path).exists():
        raise ConfigError(f"prior.path={path}: no such file. {NEED_PRIOR}")
    try:
        prior = load_prior(path)
    except (FileNotFoundError, ValueError) as exc:  # a folder, a checkpoint, a diverged run's file
        raise ConfigError(f"prior.path={path}: {exc}") from exc
    if prior.latent_is_pose:
        raise ConfigError(f"prior.path={path}: a {prior.kind!r} prior has no latent space (its latent is the pose "
                          "itself); regression needs a prior with a latent space and a decoder, e.g. GAN or VPoser")
    return prior


def build_regressor_module(cfg: DictConfig, prior: Prior, datamodule: EftDataModule | None = None
                           ) -> ImageRegressionModule:
    module = ImageRegressionModule.from_prior(
        prior, source=str(cfg.prior.path), body_model=to_container(cfg.body_model),
        **to_container(cfg.model), **to_container(cfg.loss), **to_container(cfg.optim),
    )
    if cfg.hmr.mean_params is not None:
        mean = load_mean_params(cfg.hmr.mean_params)
        for key in ("pose", "shape", "cam"):
            getattr(module.hmr, f"init_{key}").copy_(torch.as_tensor(mean[key]).reshape(1, -1))
    if cfg.hmr.checkpoint is not None:
        report = load_hmr_checkpoint(module.hmr, cfg.hmr.checkpoint)
        print(f"HMR checkpoint: {report}")
        module.use_trunk_file(cfg.hmr.checkpoint, report.loaded)  # checkpoints refer to the file, not copy it
    else:
        print("no hmr.checkpoint: the ResNet-50 trunk has random weights (fine for the synthetic embedded default only)")
        if datamodule is not None and cfg.hmr.calibrate_bn_batches > 0:
            datamodule.setup("fit")
            used = calibrate_batchnorm(module.hmr, datamodule.train_dataloader(), cfg.hmr.calibrate_bn_batches)
            print(f"random trunk: BatchNorm statistics re-estimated on {used} training batches")
    return module


def run_train_regressor(cfg: DictConfig) -> Path:
    prior = load_regression_prior(cfg.prior.path)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = prepare_run_dir(cfg)
    datamodule = build_regressor_datamodule(cfg)
    module = build_regressor_module(cfg, prior, datamodule)
    fit(cfg, run_dir, module, datamodule, [PredictionGridCallback(run_dir / "predictions", cfg.grid_images)])
    last = run_dir / "checkpoints" / "last.ckpt"
    say(f"run folder: {run_dir}\nevaluate: make eval-regressor CKPT={last}")
    return run_dir


# --- evaluation ------------------------------------------------------------------------------------


def _eval_sources(cfg: DictConfig, num_vertices: int) -> tuple[str, str, np.ndarray, str, str]:
    """(P2 file, image root, (17, V) regressor, regressor source, benchmark label)."""
    data = cfg.data
    if data.h36m_file is None:
        root = _demo_root(cfg)
        reg_path = root / "J_regressor_standin.npy"
        return (str(root / "h36m_p2_synthetic.npz"), str(root), load_h36m_regressor(reg_path, num_vertices),
                str(reg_path), SYNTHETIC_BENCHMARK)
    if data.image_dir is None:
        raise ConfigError("data.h36m_file is set but data.image_dir is not: give the folder its imgname entries "
                          "(images/S9_Directions_1.60457274_000001.jpg) are relative to")
    if data.j_regressor is None:
        raise ConfigError(
            "data.j_regressor is required with data.h36m_file: a (17, V) .npy mapping the body model's vertices to "
            "SPIN's 17 H3.6M joints (SPIN's data/J_regressor_h36m.npy for SMPL; the open body model needs its own)"
        )
    return (str(data.h36m_file), str(data.image_dir), load_h36m_regressor(data.j_regressor, num_vertices),
            str(data.j_regressor), "Human3.6M Protocol 2 (S9, S11, camera 60457274, every 5th frame), 14 LSP joints")


def evaluate_h36m_images(module: ImageRegressionModule, dataset: H36MImageDataset, j_regressor: np.ndarray,
                         batch_size: int = 32, num_workers: int = 0) -> dict[str, Any]:
    """Per-frame MPJPE and P-MPJPE (mm) of the module's meshes on P2 image crops, plus the first batch."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    reg = torch.as_tensor(j_regressor, dtype=torch.float64)
    errs, perrs, first = [], [], None
    module.eval()
    with torch.no_grad():
        for batch in loader:
            pred = module(batch["img"].to(module.device))
            e, pe = h36m_p2_errors(pred["vertices"].cpu(), batch["S"], reg)
            errs.append(e)
            perrs.append(pe)
            if first is None:
                first = (batch["img"], pred["vertices"].cpu(), pred["cam"].cpu())
    mpjpe, pmpjpe = torch.cat(errs), torch.cat(perrs)
    return {"mpjpe": mpjpe, "p_mpjpe": pmpjpe, "first": first}


def run_eval_regressor(cfg: DictConfig) -> dict[str, Any]:
    if cfg.checkpoint is None:
        raise ConfigError("eval-regressor needs a checkpoint: make eval-regressor CKPT=<run>/checkpoints/last.ckpt "
                          "(or checkpoint=path)")
    ckpt = Path(cfg.checkpoint)
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint={ckpt}: no such file")
    out_dir = Path(cfg.output_dir) if cfg.output_dir else ckpt.resolve().parent.parent / "eval"
    try:  # before anything is written: a wrong file is a user error, not a traceback
        module = ImageRegressionModule.load_from_checkpoint(str(ckpt), map_location="cpu",
                                                            hmr_trunk_path=cfg.hmr_trunk_path)
    except FileNotFoundError:
        raise
    except Exception as err:  # unpickling, missing keys and shape errors come in many types
        first = str(err).split("\n")[0]
        raise ConfigError(f"checkpoint={ckpt}: not a checkpoint of `make train-regressor` "
                          f"({type(err).__name__}: {first})") from err
    module.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    p2_file, image_root, reg, reg_source, benchmark = _eval_sources(cfg, module.body_model.num_vertices)
    dataset = H36MImageDataset(p2_file, image_root, max_frames=cfg.data.max_frames)
    t0 = time.perf_counter()
    res = evaluate_h36m_images(module, dataset, reg, cfg.data.batch_size, cfg.data.num_workers)
    seconds = time.perf_counter() - t0
    summary = {
        "benchmark": benchmark,
        "mpjpe_mm": float(res["mpjpe"].mean()),
        "p_mpjpe_mm": float(res["p_mpjpe"].mean()),
        "mpjpe_mm_median": float(res["mpjpe"].median()),
        "p_mpjpe_mm_median": float(res["p_mpjpe"].median()),
        "frames": int(len(dataset)),
        "h36m_file": p2_file,
        "image_dir": image_root,
        "j_regressor": reg_source,
        "checkpoint": str(ckpt),
        "prior": {**module.prior.describe(), "source": module.hparams.prior_spec.get("source")},
        "body_model": dict(module.hparams.body_model),
        "features": module.hparams.features,
        "train_heads": bool(module.hparams.train_heads),
        "seconds": round(seconds, 2),
        "paper_table4_mm": {"GAN-S": {"mpjpe": 63.24, "p_mpjpe": 56.32}, "EFT": {"mpjpe": 75.91, "p_mpjpe": 68.02}},
    }
    atomic_write_json(out_dir / "regression.json", summary, indent=1)
    loggers = build_loggers(cfg, out_dir)
    for logger in loggers:
        logger.log_metrics({"eval/mpjpe_mm": summary["mpjpe_mm"], "eval/p_mpjpe_mm": summary["p_mpjpe_mm"]}, step=0)
    if res["first"] is not None and cfg.grid_images > 0:
        imgs, verts, cams = (t[: cfg.grid_images] for t in res["first"])
        grid = save_grid(prediction_overlays(imgs, verts, cams, module.body_model.faces.cpu().numpy()),
                         out_dir / "predictions.png")
        log_grid(loggers, grid, "eval/predictions", 0)
    finish_loggers(loggers)
    print(json.dumps({k: summary[k] for k in ("benchmark", "mpjpe_mm", "p_mpjpe_mm", "frames")}, indent=1))
    print(f"written: {out_dir / 'regression.json'}")
    return summary
