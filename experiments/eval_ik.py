"""Runner of `make eval-ik PRIOR=path`: HuProSO3's 3D-joint IK benchmarks for any prior (or "none").

Seeded test poses (`ik.num_poses` of `ik.split`) are posed with the body model (beta = 0, no global
orientation: HuProSO3's root-relative frame); their joints 0-21 are the observation; for every task
(`ik.tasks`: full, occ_left_leg, occ_left_arm, occ_right_shoulder, leaves) the prior recovers the pose
from the observed joints (`pose_prior.fitting.joints3d_fit`). Reported per prior x task: MPJPE (mm, joints
0-21, observed and occluded alike), MPJPE of the observed and of the occluded joints, MGEO (rad, 21 body
joints) and MGEO over HuProSO3's 19 joints. Writes output_dir/ik.json and ik.csv.
Also per prior x task: the fit's wall time per 100 poses (the `fit_joints3d` calls only; same poses and
settings for every prior).
Published (HuProSO3, SMPL, AMASS test), GAN-S: 12.1 mm / 0.224 rad full; 16.8 / 29.6 / 18.8 mm with the
three occlusions; 46.5 mm from the 5 leaf joints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from experiments.config import to_container
from experiments.eval_generation import prior_paths, split_array
from experiments.evaluation import body_model_of, prior_description
from experiments.tables import print_table, write_csv
from experiments.training import prepare_run_dir
from pose_prior.fitting.joints3d_fit import (
    IK_TASKS,
    Joints3DFitSettings,
    fit_joints3d,
    ik_metrics,
    task_mask,
)
from pose_prior.io import atomic_write_json
from pose_prior.priors import NoPrior, load_prior
from pose_prior.rows import sample_rows

CSV_COLUMNS = ["name", "task", "num_poses", "mpjpe_mm", "mpjpe_observed_mm", "mpjpe_occluded_mm", "mgeo",
               "mgeo19", "fit_seconds_per_100", "mean_iterations", "prior"]
METRICS = ("mpjpe_mm", "mpjpe_observed_mm", "mpjpe_occluded_mm", "mgeo", "mgeo19")


def _mean(values: torch.Tensor) -> float | None:
    v = values[~values.isnan()]
    return float(v.double().mean()) if v.numel() else None


def run_eval_ik(cfg: DictConfig) -> Path:
    paths = prior_paths(cfg, "eval-ik")
    ik = cfg.ik
    unknown = sorted(set(ik.tasks) - set(IK_TASKS))
    if unknown:
        raise ValueError(f"ik.tasks: unknown {unknown}; valid: {sorted(IK_TASKS)}")
    run_dir = prepare_run_dir(cfg)
    dtype = torch.float64 if ik.dtype == "float64" else torch.float32
    body_model = body_model_of(cfg).to(dtype)
    split_path, test = split_array(cfg, ik.split)
    ids = sample_rows(test.shape[0], ik.num_poses, ik.seed)
    poses = torch.from_numpy(np.take(test, ids, axis=0)).to(dtype)  # (P, 63)
    with torch.no_grad():
        gt_joints = torch.cat([body_model(p).joints[:, :22] for p in poses.split(ik.batch_size)])  # (P, 22, 3)
    settings = Joints3DFitSettings.from_dict(to_container(cfg.fitting))
    records, rows = [], []
    for path in paths:
        # None: the raw pose, no prior term (fit_joints3d's NoPrior), and no start pool to draw from
        prior = None if path == "none" else load_prior(path).to(dtype)
        name = "none" if path == "none" else Path(path).parent.name
        for task in ik.tasks:
            observed = task_mask(task)
            per_sample: dict[str, list[torch.Tensor]] = {k: [] for k in METRICS}
            fit_seconds, iterations = 0.0, []
            for start in range(0, poses.shape[0], ik.batch_size):
                sl = slice(start, start + ik.batch_size)
                t0 = time.perf_counter()
                res = fit_joints3d(prior, body_model, gt_joints[sl], observed, settings)
                fit_seconds += time.perf_counter() - t0  # the fit alone, not the metrics
                iterations.append(res.iterations.cpu())
                for k, v in ik_metrics(res, gt_joints[sl], poses[sl], observed).items():
                    per_sample[k].append(v.detach().cpu())
            means = {k: _mean(torch.cat(v)) for k, v in per_sample.items()}
            means["fit_seconds_per_100"] = 100.0 * fit_seconds / poses.shape[0]
            means["mean_iterations"] = float(torch.cat(iterations).double().mean())
            print(f"{name} {task}: MPJPE {means['mpjpe_mm']:.1f} mm, MGEO {means['mgeo']:.3f} rad, "
                  f"fit {means['fit_seconds_per_100']:.2f} s / 100 poses")
            observed_joints = observed.nonzero().flatten().tolist()
            records.append({"name": name, "task": task, "observed_joints": observed_joints,
                            "num_poses": int(poses.shape[0]), **means,
                            "prior": {"path": "none", **NoPrior().describe()} if path == "none"
                            else prior_description(path, prior)})
            rows.append({"name": name, "task": task, "num_poses": int(poses.shape[0]), **means, "prior": path})
    atomic_write_json(run_dir / "ik.json", {
        "split": ik.split, "split_file": str(split_path), "pose_rows": ids.tolist() if ids.size <= 100_000 else None,
        "frame": "root-relative (zero global orientation and translation)" if not settings.fit_root
        else "global orientation and translation fitted", "fitting": to_container(cfg.fitting),
        "body_model": to_container(cfg.body_model), "results": records})
    write_csv(run_dir / "ik.csv", rows, CSV_COLUMNS)
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"  # noqa: E731
    print_table("3D-joint IK (HuProSO3 tasks)", ["prior", "task", "MPJPE mm", "observed", "occluded", "MGEO rad",
                                                  "MGEO19", "fit s/100", "iterations"],
                [[r["name"], r["task"], *(fmt(r[k]) for k in METRICS), f"{r['fit_seconds_per_100']:.2f}",
                  f"{r['mean_iterations']:.1f}"] for r in rows])
    print(f"ik.json and ik.csv in {run_dir}")
    return run_dir
