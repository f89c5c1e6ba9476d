"""Generation benchmarks the pose-prior literature publishes, for any `Prior`, under labelled conventions.

Two conventions, each reproduced as its authors define it (sources: moonbow721/DPoser `lib/utils/metric.py`
and `lib/prdc/`, hynann/NRDF `lib/utils/exp_utils.py`, `lib/exp/sample_poses.py`):

"dposer-x" (pose space; DPoser-X's AMASS table): `num_samples` = 50,000 samples as 63-d axis-angle poses.
- fid: Fréchet distance between Gaussians fitted to the raw 63-d samples and to the whole train split.
- precision / recall / density / coverage: PRDC, Euclidean on the 63-d vectors, k = 3, real set = 10,000
  seeded train poses, fake set = the samples.
- apd_cm: APD of the first `apd_samples` = 500 samples posed with the body model (beta = 0), joints 0-21.
- dnn: mean over the first `dnn_samples` samples of the distance to the nearest train pose (of the whole
  split, or of a seeded `dnn_database` rows), sum over the 21 joints of 2 acos|q1 . q2| (radians).
  Published (50k samples, SMPL, AMASS): GMM APD 16.28 cm, FID 1.02, precision 0.13, recall 0.34; VPoser
  10.75, 0.66, 0.29, 0.42; GAN-S (retrained by them) 15.68, 0.18, 0.61, 0.41; DPoser 14.28, 0.07, 0.72, 0.80.

"nrdf" (joint space): `num_samples` = 500 samples posed with the body model (beta = 0); fid between the
66-d positions of joints 0-21 of the samples and of the train split; apd_cm on the same joints.

Samples are drawn in chunks of `SAMPLE_CHUNK` whose latents come from CPU generators seeded by (seed, chunk
id) only, so the sample set depends on the seed, never on the device or the device count. Under
torch.distributed (DDP) rank r of w generates chunks r, r + w, ... (`generate_poses(..., rank, world)`) and
`gather_poses` reassembles the whole set in chunk order on every rank: the metrics are then computed on
exactly the samples one process would draw. Memory is bounded by the sample set (50k x 63 floats) plus one
chunk of every distance matrix.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
import torch
from torch import nn

from pose_prior.evaluation.coverage import chunk_seed, rank_chunks
from pose_prior.evaluation.diversity import apd, dnn
from pose_prior.evaluation.frechet import fid, frechet_distance, gaussian_moments
from pose_prior.evaluation.prdc import Backend, prdc
from pose_prior.evaluation.train_statistics import NUM_APD_JOINTS, TrainStatistics, pose_joints
from pose_prior.priors.base import Prior
from pose_prior.rows import sample_rows

__all__ = ["CONVENTIONS", "apd", "dnn", "fid", "gather_poses", "generate_poses", "generation_metrics", "prdc"]

Convention = Literal["dposer-x", "nrdf"]
CM_PER_M = 100.0
SAMPLE_STREAM, DNN_STREAM = 2, 3  # seed streams (coverage uses 0 and 1)
SAMPLE_CHUNK = 4096  # latents per seeded chunk: part of the sample set's definition, so fixed
NUM_POSE_DIMS = 63

CONVENTIONS: dict[str, dict[str, Any]] = {
    "dposer-x": {
        "space": "pose: raw 63-d axis-angle body pose",
        "num_samples": 50_000,
        "fid": "Frechet distance of Gaussians fitted to the 63-d samples and to the whole train split",
        "prdc": "Naeem et al. 2020, Euclidean on 63-d poses, k=3, real = 10,000 seeded train poses",
        "apd": "first 500 samples, joints 0-21 (beta=0), mean over pairs of the mean per-joint distance, cm",
        "dnn": "nearest train pose, sum over 21 joints of 2 acos|q1.q2| (rad)",
        "source": "DPoser-X (moonbow721/DPoser lib/utils/metric.py, lib/prdc)",
    },
    "nrdf": {
        "space": "joints: 66-d positions of joints 0-21 (beta=0)",
        "num_samples": 500,
        "fid": "Frechet distance of Gaussians fitted to the samples' and the train split's 66-d joints",
        "apd": "all samples, joints 0-21 (beta=0), mean over pairs of the mean per-joint distance, cm",
        "source": "NRDF (hynann/NRDF lib/utils/exp_utils.py calculate_frechet_distance, calculate_apd)",
    },
}


@torch.no_grad()
def generate_poses(prior: Prior, num_samples: int, seed: int = 0, chunk: int = SAMPLE_CHUNK, rank: int = 0,
                   world: int = 1) -> torch.Tensor:
    """(m, 63) float32 CPU body poses decoded from seeded latents: chunk c's latents come from a CPU
    generator seeded by (seed, c), so the samples do not depend on the device. With `world` > 1 only the
    chunks of `rank` (c = rank, rank + world, ...), concatenated in chunk order; `gather_poses` joins them."""
    out = []
    for c, _, n in rank_chunks(num_samples, chunk, rank, world):
        z = prior.sample(n, generator=torch.Generator().manual_seed(chunk_seed(seed, SAMPLE_STREAM, c)))
        out.append(prior.decode(z).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, NUM_POSE_DIMS)


def gather_poses(local: torch.Tensor, num_samples: int, chunk: int = SAMPLE_CHUNK, world: int = 1) -> torch.Tensor:
    """Every rank's `generate_poses(..., rank, world)` share -> the (num_samples, 63) set in global order,
    on every rank (a torch.distributed all-gather; `world` = 1 returns `local` unchanged)."""
    if world == 1:
        return local
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(f"gather_poses(world={world}) needs an initialised torch.distributed group")
    shares: list[Any] = [None] * world
    torch.distributed.all_gather_object(shares, local.cpu())  # 50k x 63 float32 = 12.6 MB: pickling is fine
    out = torch.empty(num_samples, local.shape[1] if local.ndim == 2 else NUM_POSE_DIMS)
    for r, share in enumerate(shares):
        pos = 0
        for _, start, n in rank_chunks(num_samples, chunk, r, world):
            out[start:start + n] = share[pos:pos + n]
            pos += n
        if pos != share.shape[0]:
            raise RuntimeError(f"gather_poses: rank {r} sent {share.shape[0]} poses, its chunks hold {pos}")
    return out


def generation_metrics(
    prior: Prior,
    body_model: nn.Module,
    train_poses: np.ndarray,
    num_samples: Optional[int] = None,
    convention: Convention = "dposer-x",
    stats: Optional[TrainStatistics] = None,
    seed: int = 0,
    k: int = 3,
    apd_samples: int = 500,
    dnn_samples: Optional[int] = 1000,
    dnn_database: Optional[int] = None,
    chunk: int = 1024,
    knn_backend: Backend = "torch",
    samples: Optional[torch.Tensor] = None,
) -> dict[str, Any]:
    """The metrics of `convention` for `prior`; returns {"convention", "definitions", "num_samples", metrics...}.

    train_poses: the train split (N, 63) (a memmap is fine: it is read in chunks). stats: its cached
    statistics (`load_train_statistics`; needs joint statistics for "nrdf"); computed here when None.
    num_samples: None = the convention's (50,000 / 500). dnn_samples: samples whose nearest train pose is
    searched (None = all; the search costs dnn_samples x dnn_database x 21). samples: precomputed (n, 63)
    poses instead of sampling the prior (e.g. to score the test split itself).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    spec = CONVENTIONS[convention]
    n = int(spec["num_samples"] if num_samples is None else num_samples)
    if stats is None:
        from pose_prior.evaluation.train_statistics import load_train_statistics

        stats = load_train_statistics(np.asarray(train_poses), seed=seed,
                                      body_model=body_model if convention == "nrdf" else None, log=lambda _: None)
    poses = generate_poses(prior, n, seed) if samples is None else torch.as_tensor(samples).float().cpu()
    n = poses.shape[0]
    out: dict[str, Any] = {"convention": convention, "definitions": dict(spec), "num_samples": n, "seed": seed,
                           "train_rows": stats.num_rows, "train_sha256": stats.sha256}
    if convention == "nrdf":
        if stats.joint_mean is None:
            raise ValueError("the nrdf convention needs joint statistics: load_train_statistics(..., body_model=...)")
        joints = pose_joints(body_model, poses).double()  # (n, 22, 3)
        mu, cov = gaussian_moments(joints.reshape(n, -1))
        out["fid"] = frechet_distance(mu, cov, stats.joint_mean, stats.joint_cov)
        out["apd_cm"] = apd(joints) * CM_PER_M
        out["joint_stats_rows"] = stats.joint_rows if stats.joint_rows is not None else stats.num_rows
        return out

    mu, cov = gaussian_moments(poses)
    out["fid"] = frechet_distance(mu, cov, stats.pose_mean, stats.pose_cov)
    out.update(prdc(stats.reference, poses, k=k, chunk=chunk, backend=knn_backend))
    out["prdc_k"], out["prdc_real"] = k, int(stats.reference.shape[0])
    m = min(apd_samples, n)
    out["apd_cm"] = apd(pose_joints(body_model, poses[:m])[:, :NUM_APD_JOINTS]) * CM_PER_M
    out["apd_samples"] = m
    d = min(n, dnn_samples) if dnn_samples is not None else n
    if d > 0:
        ids = sample_rows(len(train_poses), dnn_database, chunk_seed(seed, DNN_STREAM, 0))
        database = train_poses if ids.size == len(train_poses) else np.take(train_poses, ids, axis=0)
        dist, _ = dnn(poses[:d], database, chunk=chunk)
        out.update(dnn=float(dist.mean()), dnn_median=float(dist.median()), dnn_samples=d,
                   dnn_database=int(ids.size))
    return out
