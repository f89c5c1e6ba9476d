"""Interpolation smoothness (paper Sec. 4.2, Eq. 6, Fig. 5) every N epochs, at test time, or on demand.

Seeded pairs of test bodies are inverted into the prior's latent space, interpolated with the prior's
own scheme and decoded (`pose_prior.evaluation.interpolation.evaluate_interpolation`); under DDP the pairs are shared
out over the ranks and gathered back (equal shapes). The callback keeps the statistics and their record
(`last_stats`, `last_record`) for the caller; rank zero logs ratio mean/std/median and writes
interpolation.json and the mean normalised curve (interpolation_curve.png) for the user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from callbacks.evaluation_common import (
    PeriodicEvaluationCallback,
    PoseSources,
    log_images,
    log_scalars,
    prior_of,
    resolve_sources,
    write_json,
)
from pose_prior.evaluation.interpolation import (
    InterpolationStats,
    evaluate_interpolation,
    interpolation_pairs,
)
from pose_prior.visual.plots import close, plot_interpolation_curves


def interpolation_record(stats: InterpolationStats, num_rows: int, seed: int) -> dict[str, Any]:
    """The interpolation.json content: Eq. 6 ratio statistics, sizes, the mean normalised curve, the pairs."""
    start, end = interpolation_pairs(num_rows, int(stats.ratio.shape[0]), seed)
    return {
        **stats.summary(),
        "meshes_per_path": int(stats.normalised.shape[1]) + 1,
        "mean_curve": stats.mean_curve().tolist(),
        "endpoint_mm_mean": float(stats.endpoint_mm.double().mean()),
        "pairs_rows": [[int(a), int(b)] for a, b in zip(start, end)],
        "ratio_per_pair": stats.ratio.double().tolist(),
    }


def write_interpolation_outputs(record: Mapping[str, Any], stats: InterpolationStats, out_dir: Path,
                                label: str = "prior") -> list[Path]:
    """interpolation.json (`record`) and interpolation_curve.png in out_dir."""
    write_json(out_dir / "interpolation.json", record)
    path = out_dir / "interpolation_curve.png"
    close(plot_interpolation_curves({label: stats.mean_curve()}, path))
    return [path]


class InterpolationCallback(PeriodicEvaluationCallback):
    """Eq. 6 statistics on `num_pairs` seeded test pairs every `every_n_epochs` epochs (0 = never), after
    `trainer.test` when `run_on_test`, or on `evaluate(trainer, module)` (called on every rank).

    test_poses: (N, 63) poses, or a picklable getter `trainer -> {"test": poses}` (e.g.
    `DataModuleSplits(("test",))`). `invert_kwargs` go to `prior.invert`. After an evaluation `last_stats`
    holds the statistics and `last_record` the interpolation.json record (gathered: the same on every rank).
    """

    result_attributes = ("last_stats", "last_record")

    def __init__(self, body_model: torch.nn.Module, test_poses: Any | Callable[[pl.Trainer], PoseSources],
                 every_n_epochs: int = 50, num_pairs: int = 100, steps: int = 11, seed: int = 0,
                 invert_kwargs: Mapping[str, Any] | None = None, batch_size: int = 32,
                 out_dir: str | Path | None = None, run_on_test: bool = False,
                 metadata: Mapping[str, Any] | None = None, prefix: str = "interpolation") -> None:
        self.body_model = body_model
        self.test_poses = test_poses
        self.every_n_epochs = int(every_n_epochs)
        self.num_pairs, self.steps, self.seed, self.batch_size = int(num_pairs), int(steps), int(seed), int(batch_size)
        self.invert_kwargs = dict(invert_kwargs or {})
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_on_test = run_on_test
        self.metadata = dict(metadata or {})
        self.prefix = prefix
        self.last_stats: InterpolationStats | None = None
        self.last_record: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, section: Any, body_model: torch.nn.Module,
                    test_poses: Any | Callable[[pl.Trainer], PoseSources], *, out_dir: str | Path | None = None,
                    run_on_test: bool = False, metadata: Mapping[str, Any] | None = None) -> InterpolationCallback:
        """Built from an `interpolation` config section (experiments.schemas.evaluation.InterpolationSizesConfig)."""
        i = section
        invert = i.invert if isinstance(i.invert, dict) else OmegaConf.to_container(i.invert, resolve=True)
        return cls(body_model, test_poses, every_n_epochs=i.every_n_epochs, num_pairs=i.num_pairs, steps=i.steps,
                   seed=i.seed, invert_kwargs=invert, batch_size=i.batch_size, out_dir=out_dir,
                   run_on_test=run_on_test, metadata=metadata)

    def _poses(self, trainer: pl.Trainer) -> Any:
        if callable(self.test_poses):
            sources = resolve_sources(self.test_poses, trainer)
            if "test" not in sources:
                raise ValueError(f"InterpolationCallback: no 'test' split among {sorted(sources)}")
            return sources["test"]
        return self.test_poses

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, out_dir: Path | None = None,
                 log: bool = True) -> InterpolationStats:
        poses = self._poses(trainer)
        stats = evaluate_interpolation(prior_of(pl_module), self.body_model, poses, self.num_pairs, self.steps,
                                       self.seed, self.invert_kwargs, device=pl_module.device,
                                       batch_size=self.batch_size, rank=trainer.global_rank, world=trainer.world_size)
        meta = {**self.metadata, "epoch": int(trainer.current_epoch), "global_step": int(trainer.global_step),
                "invert_kwargs": self.invert_kwargs}
        self.last_stats = stats
        self.last_record = {**meta, **interpolation_record(stats, len(poses), self.seed)}
        summary = stats.summary()
        if log:
            log_scalars(pl_module, {f"{self.prefix}/ratio_{k}": summary[f"ratio_{k}"] for k in ("mean", "std", "median")})
        if trainer.is_global_zero and out_dir is not None:
            pictures = write_interpolation_outputs(self.last_record, stats, out_dir,
                                                   label=str(self.metadata.get("name", "prior")))
            log_images(trainer, f"{self.prefix}/curve", pictures)
        return stats

