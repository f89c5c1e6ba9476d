"""Generation metrics (FID, PRDC, APD, dNN under the DPoser-X and NRDF conventions) of a prior; DDP-aware.

Every rank generates its own seeded share of each convention's samples (`generate_poses(..., rank, world)`:
chunks r, r + w, ...) and the shares are all-gathered into the whole set in global order
(`gather_poses`), so the set is the one a single process draws. Rank zero then loads the train split's
cached statistics and computes the metrics with `pose_prior.evaluation.generation.generation_metrics` (the
same function `make eval-generation` and `make compare` use), and broadcasts the records, so every rank
holds the same `last_records`. Rank zero logs the scalars (self.log -> CSV / W&B) and, given an out_dir,
writes generation.json.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.evaluation_common import PeriodicEvaluationCallback, log_scalars, prior_of, write_json
from pose_prior.evaluation.generation import (
    CONVENTIONS,
    SAMPLE_CHUNK,
    gather_poses,
    generate_poses,
    generation_metrics,
)
from pose_prior.evaluation.train_statistics import TrainStatistics, load_train_statistics

SCALARS = ("fid", "precision", "recall", "density", "coverage", "apd_cm", "dnn")


@dataclass(frozen=True)
class GenerationSettings:
    """Sizes of the generation metrics (the `generation` config section, as plain values)."""

    conventions: tuple[str, ...] = ("dposer-x", "nrdf")
    dposer_x_samples: int = 50_000
    nrdf_samples: int = 500
    num_references: int = 10_000
    prdc_k: int = 3
    apd_samples: int = 500
    dnn_samples: Optional[int] = 1000
    dnn_database: Optional[int] = None
    joint_stats_rows: Optional[int] = None
    chunk: int = 1024
    knn_backend: str = "torch"
    split: str = "train"
    seed: int = 0
    sample_chunk: int = SAMPLE_CHUNK  # latents per seeded chunk (the unit a rank generates); part of the set

    def __post_init__(self) -> None:
        unknown = [c for c in self.conventions if c not in CONVENTIONS]
        if unknown:
            raise ValueError(f"generation.conventions: unknown {unknown}; valid: {sorted(CONVENTIONS)}")

    @classmethod
    def from_config(cls, section: Any) -> GenerationSettings:
        """From a `generation` config section (experiments.schemas.evaluation.GenerationSettingsConfig)."""
        values = {k: section[k] for k in cls.__dataclass_fields__ if k in section}
        values["conventions"] = tuple(values.get("conventions", cls.conventions))
        return cls(**values)

    def num_samples(self, convention: str) -> int:
        return self.dposer_x_samples if convention == "dposer-x" else self.nrdf_samples


def generation_scalars(records: Sequence[Mapping[str, Any]], prefix: str = "generation") -> dict[str, float]:
    """{"generation/dposer-x/fid": ..., ...} of the records' numeric metrics."""
    return {f"{prefix}/{r['convention']}/{key}": r[key] for r in records for key in SCALARS
            if isinstance(r.get(key), (int, float))}


class GenerationCallback(PeriodicEvaluationCallback):
    """Generation metrics against the train split file `split_path` ((N, 63) .npy) every `every_n_epochs`
    training epochs (0 = never), after `trainer.test` when `run_on_test`, or on `evaluate(trainer, module)`
    (on every rank). The split's statistics are cached at `cache_path` (`load_train_statistics`).
    `last_records`: one record per convention (the same on every rank)."""

    result_attributes = ("last_records",)

    def __init__(self, body_model: torch.nn.Module, split_path: str | Path, settings: GenerationSettings,
                 cache_path: str | Path | None = None, every_n_epochs: int = 0, out_dir: str | Path | None = None,
                 run_on_test: bool = False, metadata: Mapping[str, Any] | None = None,
                 prefix: str = "generation", say: Callable[[str], None] = print) -> None:
        self.body_model = body_model
        self.split_path = Path(split_path)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.settings = settings
        self.every_n_epochs = int(every_n_epochs)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_on_test = run_on_test
        self.metadata = dict(metadata or {})
        self.prefix = prefix
        self.say = say
        self.last_records: list[dict[str, Any]] | None = None

    def train_statistics(self) -> TrainStatistics:
        s = self.settings
        return load_train_statistics(self.split_path, self.cache_path, num_references=s.num_references, seed=s.seed,
                                     body_model=self.body_model if "nrdf" in s.conventions else None,
                                     joint_rows=s.joint_stats_rows, log=self.say)

    def compute(self, prior: Any, rank: int = 0, world: int = 1) -> list[dict[str, Any]]:
        """Each rank its share of the samples, gathered; rank zero computes the metrics on the whole set and
        broadcasts them: every rank returns the same records (one per convention)."""
        s = self.settings
        samples = {}
        for convention in s.conventions:
            n = s.num_samples(convention)
            share = generate_poses(prior, n, s.seed, chunk=s.sample_chunk, rank=rank, world=world)
            samples[convention] = gather_poses(share, n, chunk=s.sample_chunk, world=world)
        records = None
        if rank == 0:
            stats = self.train_statistics()
            train = np.load(self.split_path, mmap_mode="r")
            records = []
            for convention in s.conventions:
                self.say(f"generation metrics: {convention} ({samples[convention].shape[0]} samples)")
                records.append(generation_metrics(
                    prior, self.body_model, train, convention=convention, stats=stats, seed=s.seed, k=s.prdc_k,
                    apd_samples=s.apd_samples, dnn_samples=s.dnn_samples, dnn_database=s.dnn_database,
                    chunk=s.chunk, knn_backend=s.knn_backend, samples=samples[convention]) | {"world_size": world})
        if world > 1:  # the other ranks wait here while rank zero computes
            box = [records]
            torch.distributed.broadcast_object_list(box, src=0)
            records = box[0]
        return records

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, out_dir: Path | None = None,
                 log: bool = True) -> list[dict[str, Any]]:
        """Run the evaluation now (every rank must call it); rank zero computes, writes and logs."""
        world, rank = int(trainer.world_size), int(trainer.global_rank)
        self.body_model.to(pl_module.device)  # joints of the samples and of the train split where the prior runs
        records = self.compute(prior_of(pl_module), rank, world)
        self.last_records = records
        if log:
            log_scalars(pl_module, generation_scalars(records, self.prefix))
        if trainer.is_global_zero and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / "generation.json", {**self.metadata, "split": self.settings.split,
                                                      "split_file": str(self.split_path), "results": records})
        return records
