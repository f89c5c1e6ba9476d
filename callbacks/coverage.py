"""Recall / precision (paper Sec. 4.1) every N training epochs, at test time, or on demand; DDP-aware.

Every rank runs `pose_prior.evaluation.coverage.evaluate_coverage` with its rank and the world size: each generates
its own seeded share of the bodies (disjoint global indices) and the per-reference (min, argmin) are
min-reduced across ranks (torch.distributed MIN on distances, then MIN on the winners' indices), so the
numbers equal the single-process ones. FAISS indexes are built inside the search, per rank and per chunk
(never pickled). The callback keeps the result and its summary record (`last_result`, `last_record`) for
the caller; rank zero logs the scalars (self.log -> CSV / W&B), writes coverage.json and
coverage_nearest.npz for the user, and plots the CDFs (Fig. 2), a t-SNE of generated vs real poses (Fig. 3)
and the generated bodies farthest from the training set beside their nearest training bodies (Fig. 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.evaluation_common import (
    PeriodicEvaluationCallback,
    PoseSources,
    log_images,
    log_scalars,
    prior_of,
    resolve_sources,
    write_json,
)
from pose_prior.evaluation.coverage import CoverageResult, evaluate_coverage, farthest_generated
from pose_prior.io import atomic_savez
from pose_prior.rows import take_rows
from pose_prior.visual.plots import close, plot_distance_cdfs, plot_tsne, tsne_embedding
from pose_prior.visual.render import render_nearest_pairs


def coverage_scalars(result: CoverageResult, prefix: str = "coverage") -> dict[str, float]:
    """{"coverage/train/recall_mean_mm": ..., ...}: mean, std, median of recall and precision per split."""
    out = {}
    for split, entry in result.summary().items():
        for metric in ("recall", "precision"):
            for stat in ("mean_mm", "std_mm", "median_mm"):
                out[f"{prefix}/{split}/{metric}_{stat}"] = entry[metric][stat]
    return out


def coverage_record(result: CoverageResult, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The coverage.json content: metadata, per split recall / precision statistics (mm), sizes, seconds."""
    return {**dict(metadata or {}), **result.summary(), "sizes": result.sizes, "seconds": result.seconds}


def nearest_arrays(result: CoverageResult) -> dict[str, np.ndarray]:
    """The coverage_nearest.npz content: per-body distances (mm) and nearest neighbours of every split."""
    arrays = {}
    for split in result.recall:
        arrays[f"{split}_recall_mm"] = result.recall[split].distance_mm.numpy()
        arrays[f"{split}_recall_index"] = result.recall[split].index.numpy()
        arrays[f"{split}_reference_rows"] = np.asarray(result.reference_rows[split])
        arrays[f"{split}_precision_mm"] = result.precision[split].distance_mm.numpy()
        arrays[f"{split}_precision_row"] = result.precision[split].index.numpy()
    return arrays


def write_farthest_samples(result: CoverageResult, train_poses: Any, body_model: torch.nn.Module, path: Path,
                           count: int = 10, title: str = "") -> Path:
    """Paper Fig. 4: the `count` generated bodies farthest from the train split above their nearest train bodies."""
    poses, rows, dist = farthest_generated(result, "train", count)
    nearest = take_rows(train_poses, np.sort(rows))[np.argsort(np.argsort(rows))]  # rows in `poses` order
    with torch.no_grad():
        dev = body_model.faces.device
        gen_v = body_model(poses.to(dev, body_model.dtype)).vertices.cpu().numpy()
        near_v = body_model(nearest.to(dev, body_model.dtype)).vertices.cpu().numpy()
    close(render_nearest_pairs(gen_v, near_v, body_model.faces.cpu().numpy(), dist.tolist(), path,
                               f"generated bodies farthest from the training set {title}".strip()))
    return path


def write_coverage_outputs(result: CoverageResult, out_dir: Path, metadata: Mapping[str, Any] | None = None,
                           tsne_points: int = 1500, tsne_perplexity: float = 30.0, seed: int = 0,
                           title: str = "", farthest: int = 0, train_poses: Any = None,
                           body_model: torch.nn.Module | None = None) -> list[Path]:
    """coverage.json, coverage_nearest.npz, coverage_cdf.png, (tsne_points > 0) coverage_tsne.png and
    (farthest > 0, with the train poses and the body model) coverage_farthest.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "coverage.json", coverage_record(result, metadata))
    atomic_savez(out_dir / "coverage_nearest.npz", **nearest_arrays(result))
    pictures = [out_dir / "coverage_cdf.png"]
    fig = plot_distance_cdfs({
        f"recall {title}".strip(): {s: r.distance_mm for s, r in result.recall.items()},
        f"precision {title}".strip(): {s: r.distance_mm for s, r in result.precision.items()},
    }, pictures[0])
    close(fig)
    if tsne_points > 0 and "train" in result.reference_poses:
        emb, is_gen = tsne_embedding(result.generated_poses, result.reference_poses["train"], tsne_points, seed,
                                     tsne_perplexity)
        pictures.append(out_dir / "coverage_tsne.png")
        close(plot_tsne(emb, is_gen, pictures[-1], title=f"t-SNE of body poses {title}".strip()))
    if farthest > 0 and train_poses is not None and body_model is not None and "train" in result.precision:
        pictures.append(write_farthest_samples(result, train_poses, body_model, out_dir / "coverage_farthest.png",
                                               farthest, title))
    return pictures


class CoverageCallback(PeriodicEvaluationCallback):
    """Recall and precision against reference splits every `every_n_epochs` training epochs (0 = never),
    after `trainer.test` when `run_on_test`, or whenever `evaluate(trainer, module)` is called (on every rank).

    reference_poses: {split: (N, 63) poses} or a picklable getter `trainer -> {split: poses}` (e.g.
    `DataModuleSplits()`); "train" and optionally "test". Results go to `out_dir/epochXXXX/` during
    training, to `out_dir` itself at test time. After an evaluation `last_result` holds the result and
    `last_record` the coverage.json record (the same on every rank: distances are min-reduced).
    """

    result_attributes = ("last_result", "last_record")

    def __init__(self, body_model: torch.nn.Module, reference_poses: PoseSources | Callable[[pl.Trainer], PoseSources],
                 every_n_epochs: int = 50, num_generated: int = 6_000_000, num_references: int = 10_000,
                 num_precision: int = 10_000, chunk_size: int = 4096, seed: int = 0,
                 precision_database: int | None = None, tsne_points: int = 1500, tsne_perplexity: float = 30.0,
                 farthest_samples: int = 10, out_dir: str | Path | None = None, run_on_test: bool = False,
                 metadata: Mapping[str, Any] | None = None, nearest_kwargs: Mapping[str, Any] | None = None,
                 prefix: str = "coverage") -> None:
        self.body_model = body_model
        self.reference_poses = reference_poses
        self.every_n_epochs = int(every_n_epochs)
        self.sizes = dict(num_generated=int(num_generated), num_references=int(num_references),
                          num_precision=int(num_precision), chunk_size=int(chunk_size),
                          precision_database=precision_database)
        self.seed = int(seed)
        self.tsne_points, self.tsne_perplexity = int(tsne_points), float(tsne_perplexity)
        self.farthest_samples = int(farthest_samples)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_on_test = run_on_test
        self.metadata = dict(metadata or {})
        self.nearest_kwargs = dict(nearest_kwargs or {})
        self.prefix = prefix
        self.last_result: CoverageResult | None = None
        self.last_record: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, section: Any, body_model: torch.nn.Module,
                    reference_poses: PoseSources | Callable[[pl.Trainer], PoseSources], *,
                    out_dir: str | Path | None = None, run_on_test: bool = False,
                    metadata: Mapping[str, Any] | None = None) -> CoverageCallback:
        """Built from a `coverage` config section (experiments.schemas.evaluation.CoverageSizesConfig)."""
        c = section
        return cls(body_model, reference_poses, every_n_epochs=c.every_n_epochs, num_generated=c.num_generated,
                   num_references=c.num_references, num_precision=c.num_precision, chunk_size=c.chunk_size,
                   seed=c.seed, precision_database=c.precision_database, tsne_points=c.tsne_points,
                   tsne_perplexity=c.tsne_perplexity, farthest_samples=c.farthest_samples, out_dir=out_dir, run_on_test=run_on_test, metadata=metadata,
                   nearest_kwargs={"levels": tuple(c.nearest_levels)} if c.nearest_levels else None)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, out_dir: Path | None = None,
                 log: bool = True) -> CoverageResult:
        """Run the evaluation now (every rank must call it); rank zero writes and logs."""
        sources = resolve_sources(self.reference_poses, trainer)
        if "train" not in sources:
            raise ValueError(f"CoverageCallback: reference poses need a 'train' split, got {sorted(sources)}")
        prior = prior_of(pl_module)
        result = evaluate_coverage(
            prior, self.body_model, sources["train"], sources.get("test"), seed=self.seed,
            device=pl_module.device, rank=trainer.global_rank, world=trainer.world_size,
            nearest_kwargs=self.nearest_kwargs, **self.sizes,
        )
        # during training, where training is; at test time the prior's own epoch is in its provenance instead
        meta = dict(self.metadata) if self.run_on_test else {
            **self.metadata, "epoch": int(trainer.current_epoch), "global_step": int(trainer.global_step)}
        self.last_result, self.last_record = result, coverage_record(result, meta)
        scalars = coverage_scalars(result, self.prefix)
        if log:
            log_scalars(pl_module, scalars)
        if trainer.is_global_zero and out_dir is not None:
            pictures = write_coverage_outputs(result, out_dir, meta, self.tsne_points, self.tsne_perplexity,
                                              self.seed, title=str(self.metadata.get("name", "")),
                                              farthest=self.farthest_samples, train_poses=sources["train"],
                                              body_model=self.body_model)
            log_images(trainer, f"{self.prefix}/plots", pictures)
        return result

