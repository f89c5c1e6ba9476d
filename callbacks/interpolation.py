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

import numpy as np
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
from pose_prior.priors.base import Prior
from pose_prior.visual.plots import close, plot_interpolation_curves
from pose_prior.visual.render import render_sequences


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
        "valid_per_pair": stats.valid.tolist(),
        "inversion_mm_per_pair": stats.inversion_mm.double().tolist(),
    }


def write_interpolation_outputs(record: Mapping[str, Any], stats: InterpolationStats, out_dir: Path,
                                label: str = "prior", prior: Prior | None = None,
                                body_model: torch.nn.Module | None = None, render_pairs: int = 0) -> list[Path]:
    """interpolation.json (`record`), interpolation_curve.png and (render_pairs > 0, with the prior and the
    body model) interpolation_sequences.png in out_dir."""
    write_json(out_dir / "interpolation.json", record)
    path = out_dir / "interpolation_curve.png"
    close(plot_interpolation_curves({label: stats.mean_curve()}, path))
    pictures = [path]
    if render_pairs > 0 and prior is not None and body_model is not None and stats.endpoints is not None:
        pictures.append(write_interpolation_sequences(stats, prior, body_model, out_dir / "interpolation_sequences.png",
                                                      render_pairs, label))
    return pictures


def write_interpolation_sequences(stats: InterpolationStats, prior: Prior, body_model: torch.nn.Module, path: Path,
                                  count: int = 3, label: str = "prior") -> Path:
    """Paper Fig. 6 / supp. Figs. 7-8: the first `count` valid pairs' paths as mesh sequences with their curves."""
    pairs = torch.nonzero(stats.valid)[:count, 0].tolist()
    steps = stats.normalised.shape[1] + 1
    sequences = []
    with torch.no_grad():
        for p in pairs:
            z = stats.endpoints[p].to(prior.device, prior.dtype)
            path_z = prior.interpolate(z[0], z[1], steps)  # (S, dim)
            sequences.append(prior.vertices(path_z, body_model.to(prior.device)).cpu().numpy())
    titles = [f"{label}: pair {p}, ratio {float(stats.ratio[p]):.2f}" for p in pairs]
    curves = stats.normalised[pairs].cpu().numpy()
    faces = body_model.faces.cpu().numpy()
    close(render_sequences(np.stack(sequences) if sequences else np.zeros((0, steps, 1, 3)), faces, curves,
                           path, titles))
    return path


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
                 max_inversion_mm: float | None = None, render_pairs: int = 3, out_dir: str | Path | None = None, run_on_test: bool = False,
                 metadata: Mapping[str, Any] | None = None, prefix: str = "interpolation") -> None:
        self.body_model = body_model
        self.test_poses = test_poses
        self.every_n_epochs = int(every_n_epochs)
        self.num_pairs, self.steps, self.seed, self.batch_size = int(num_pairs), int(steps), int(seed), int(batch_size)
        self.invert_kwargs = dict(invert_kwargs or {})
        self.max_inversion_mm = None if max_inversion_mm is None else float(max_inversion_mm)
        self.render_pairs = int(render_pairs)
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
                   seed=i.seed, invert_kwargs=invert, batch_size=i.batch_size, max_inversion_mm=i.max_inversion_mm,
                   render_pairs=i.render_pairs, out_dir=out_dir,
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
        prior = prior_of(pl_module)
        stats = evaluate_interpolation(prior, self.body_model, poses, self.num_pairs, self.steps,
                                       self.seed, self.invert_kwargs, device=pl_module.device,
                                       batch_size=self.batch_size, rank=trainer.global_rank, world=trainer.world_size,
                                       max_inversion_mm=self.max_inversion_mm)
        meta = {**self.metadata, "invert_kwargs": self.invert_kwargs, "max_inversion_mm": self.max_inversion_mm}
        if not self.run_on_test:  # at test time the prior's own epoch is in its provenance instead
            meta.update(epoch=int(trainer.current_epoch), global_step=int(trainer.global_step))
        self.last_stats = stats
        self.last_record = {**meta, **interpolation_record(stats, len(poses), self.seed)}
        summary = stats.summary()
        if log:
            log_scalars(pl_module, {f"{self.prefix}/ratio_{k}": summary[f"ratio_{k}"] for k in ("mean", "std", "median")})
        if trainer.is_global_zero and out_dir is not None:
            pictures = write_interpolation_outputs(self.last_record, stats, out_dir,
                                                   label=str(self.metadata.get("name", "prior")), prior=prior,
                                                   body_model=self.body_model, render_pairs=self.render_pairs)
            log_images(trainer, f"{self.prefix}/curve", pictures)
        return stats

