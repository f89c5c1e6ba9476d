"""Evaluation callbacks are built from their config section by one function each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from callbacks.coverage import CoverageCallback
from callbacks.interpolation import InterpolationCallback
from experiments.config import CONFIGS_DIR, load_config


def test_coverage_callback_from_its_section(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS_DIR / "gan_s.yaml", ["coverage.every_n_epochs=5", "coverage.nearest_levels=[8,32]",
                                                   "coverage.num_generated=123", "coverage.precision_database=7"])
    cb = CoverageCallback.from_config(cfg.coverage, None, {}, out_dir=tmp_path, metadata={"name": "x"})
    c = cfg.coverage
    assert cb.every_n_epochs == 5 and not cb.run_on_test and cb.out_dir == tmp_path
    assert cb.sizes == {"num_generated": 123, "num_references": c.num_references, "num_precision": c.num_precision,
                        "chunk_size": c.chunk_size, "precision_database": 7}
    assert cb.nearest_kwargs == {"levels": (8, 32)} and cb.metadata == {"name": "x"}
    assert (cb.seed, cb.tsne_points, cb.tsne_perplexity) == (c.seed, c.tsne_points, c.tsne_perplexity)
    plain = CoverageCallback.from_config(load_config(CONFIGS_DIR / "eval_coverage.yaml", ["coverage.nearest_levels=null"]).coverage, None, {},
                                         run_on_test=True)
    assert plain.nearest_kwargs == {} and plain.run_on_test and plain.every_n_epochs == 0


def test_interpolation_callback_from_its_section() -> None:
    cfg = load_config(CONFIGS_DIR / "eval_interp.yaml", ["interpolation.num_pairs=4", "interpolation.invert.steps=9"])
    poses = np.zeros((10, 63), dtype=np.float32)
    cb = InterpolationCallback.from_config(cfg.interpolation, None, poses, run_on_test=True)
    i = cfg.interpolation
    assert (cb.num_pairs, cb.steps, cb.seed, cb.batch_size) == (4, i.steps, i.seed, i.batch_size)
    assert cb.invert_kwargs["steps"] == 9 and isinstance(cb.invert_kwargs, dict)
    assert cb.run_on_test and cb.test_poses is poses


def test_results_state_round_trip() -> None:
    """What a spawned rank zero sends back is what the main-process callback then holds."""
    cb = CoverageCallback(None, {})
    cb.last_record = {"train": {"recall": {"mean_mm": 1.0}}}
    other = CoverageCallback(None, {})
    other.load_results_state(cb.results_state())
    assert other.last_record == cb.last_record and other.last_result is None
