"""Train-split statistics of the generation benchmarks, computed once and cached beside the split.

From a prepared split array (N, 63) float32 (`<prepared_dir>/<split>/body_pose.npy`, read as a memmap in
chunks) it computes
- pose space (DPoser-X): mean (63,) and covariance (63, 63) of the raw axis-angle rows (float64, ddof 1)
  and `num_references` reference poses (rows drawn with `pose_prior.rows.sample_rows(N, size, seed)`),
  the real set of PRDC;
- joint space (NRDF), when a body model is given: mean (66,) and covariance (66, 66) of the positions of
  joints 0-21 of every row (or of a seeded subset of `joint_rows` rows) posed with beta = 0, zero
  orientation and translation.

A cache file records the split's sha256 (plus its size and mtime, to skip re-hashing an unchanged file),
the sizes and seed it was built with and, for joint statistics, a hash of the body model's rest joints and
kinematic tree; it is used only when all of these match. Files are written with `atomic_savez`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from pose_prior.evaluation.frechet import MomentAccumulator
from pose_prior.io import atomic_savez, sha256_file
from pose_prior.rows import sample_rows

CACHE_VERSION = 1
NUM_APD_JOINTS = 22  # joints 0-21: pelvis and the 21 body joints a 63-d pose drives
READ_CHUNK = 65536


@dataclass
class TrainStatistics:
    """What the generation metrics need from the train split."""

    num_rows: int
    sha256: str
    pose_mean: np.ndarray  # (63,) float64
    pose_cov: np.ndarray  # (63, 63) float64
    reference_ids: np.ndarray  # (R,) int64 sorted rows of the split
    reference: np.ndarray  # (R, 63) float32 the PRDC real set
    joint_mean: Optional[np.ndarray] = None  # (66,) float64, metres
    joint_cov: Optional[np.ndarray] = None  # (66, 66) float64
    joint_rows: Optional[int] = None  # rows the joint statistics used (None: all)
    body_model_key: Optional[str] = None


def body_model_key(body_model: nn.Module) -> str:
    """A short hash of what joint positions depend on under a 63-d pose: rest joints and parents."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(body_model.rest_joints.detach().double().cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(body_model.parents.detach().cpu().numpy().astype(np.int64)).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def pose_joints(body_model: nn.Module, body_pose: torch.Tensor | np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """(N, 63) -> (N, 22, 3) joints 0-21 (beta = 0, zero orientation and translation), body model dtype."""
    pose = torch.as_tensor(np.asarray(body_pose) if isinstance(body_pose, np.ndarray) else body_pose)
    pose = pose.to(device=body_model.device, dtype=body_model.dtype)
    out = [body_model(p).joints[:, :NUM_APD_JOINTS] for p in pose.split(chunk)]
    return torch.cat(out) if out else pose.new_zeros(0, NUM_APD_JOINTS, 3)


def _open(split: str | os.PathLike | np.ndarray) -> np.ndarray:
    array = split if isinstance(split, np.ndarray) else np.load(split, mmap_mode="r")
    if array.ndim != 2 or array.shape[1] != 63:
        raise ValueError(f"expected a (N, 63) pose array, got shape {array.shape}")
    return array


def compute_pose_statistics(array: np.ndarray, num_references: int = 10_000, seed: int = 0,
                            chunk: int = READ_CHUNK) -> dict[str, np.ndarray]:
    acc = MomentAccumulator()
    for start in range(0, array.shape[0], chunk):
        acc.update(np.asarray(array[start:start + chunk]))
    mean, cov = acc.moments()
    ids = sample_rows(array.shape[0], num_references, seed)
    return {"pose_mean": mean, "pose_cov": cov, "reference_ids": ids,
            "reference": np.take(array, ids, axis=0).astype(np.float32)}


def compute_joint_statistics(array: np.ndarray, body_model: nn.Module, rows: Optional[int] = None, seed: int = 0,
                             chunk: int = 8192) -> dict[str, np.ndarray]:
    ids = sample_rows(array.shape[0], rows, seed)  # all rows when rows is None
    acc = MomentAccumulator()
    for start in range(0, ids.size, chunk):
        poses = np.take(array, ids[start:start + chunk], axis=0)
        acc.update(pose_joints(body_model, poses).reshape(len(poses), -1))
    mean, cov = acc.moments()
    return {"joint_mean": mean, "joint_cov": cov}


def _read_cache(path: Path) -> Optional[dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def _split_hash(path: Path, cached: Optional[dict[str, Any]]) -> str:
    """The split file's sha256; reused from the cache when size and mtime are unchanged."""
    st = path.stat()
    if cached is not None and int(cached.get("size", -1)) == st.st_size and int(cached.get("mtime_ns", -1)) == st.st_mtime_ns:
        return str(cached["sha256"])
    return sha256_file(path)


def joint_cache_path(cache_path: Path, key: str) -> Path:
    return cache_path.with_name(f"{cache_path.stem}_joints_{key}.npz")


def load_train_statistics(split: str | os.PathLike | np.ndarray, cache_path: str | os.PathLike | None = None,
                          num_references: int = 10_000, seed: int = 0, body_model: Optional[nn.Module] = None,
                          joint_rows: Optional[int] = None, log: Any = print) -> TrainStatistics:
    """The statistics of `split` (a path to a (N, 63) .npy, or an array), from `cache_path` when it matches
    the split and settings, else computed (and written there when `cache_path` is given). Joint statistics
    only with a `body_model`."""
    array = _open(split)
    path = None if isinstance(split, np.ndarray) else Path(split)
    cache = None if cache_path is None or path is None else Path(cache_path)
    cached = _read_cache(cache) if cache is not None and cache.is_file() else None
    sha = _split_hash(path, cached) if path is not None else "in-memory"
    stamp = {"sha256": sha, "format_version": CACHE_VERSION}
    if path is not None:
        st = path.stat()
        stamp.update(size=st.st_size, mtime_ns=st.st_mtime_ns)

    def matches(entry: Optional[dict[str, Any]], **settings: Any) -> bool:
        return (entry is not None and str(entry.get("sha256")) == sha
                and int(entry.get("format_version", -1)) == CACHE_VERSION
                and all(str(entry.get(k)) == str(v) for k, v in settings.items()))

    if matches(cached, num_references=num_references, seed=seed):
        pose = cached
    else:
        log(f"computing pose statistics of {path or 'the split'} ({array.shape[0]} rows)")
        pose = compute_pose_statistics(array, num_references, seed)
        if cache is not None:
            atomic_savez(cache, **pose, **stamp, num_references=num_references, seed=seed)
    stats = TrainStatistics(num_rows=int(array.shape[0]), sha256=sha, pose_mean=pose["pose_mean"],
                            pose_cov=pose["pose_cov"], reference_ids=pose["reference_ids"], reference=pose["reference"])
    if body_model is None:
        return stats
    key = body_model_key(body_model)
    jcache = None if cache is None else joint_cache_path(cache, key)
    jcached = _read_cache(jcache) if jcache is not None and jcache.is_file() else None
    rows_tag = "all" if joint_rows is None else int(joint_rows)
    if matches(jcached, joint_rows=rows_tag, seed=seed, body_model_key=key):
        joint = jcached
    else:
        log(f"computing joint statistics of {path or 'the split'} with {getattr(body_model, 'name', 'the body model')}")
        joint = compute_joint_statistics(array, body_model, joint_rows, seed)
        if jcache is not None:
            atomic_savez(jcache, **joint, **stamp, joint_rows=rows_tag, seed=seed, body_model_key=key)
    stats.joint_mean, stats.joint_cov = joint["joint_mean"], joint["joint_cov"]
    stats.joint_rows, stats.body_model_key = joint_rows, key
    return stats
