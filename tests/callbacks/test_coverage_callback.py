"""CoverageCallback inside GAN training: logged to CSV, written per epoch, equal to evaluating the exported prior."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from datamodules.amass.datamodule import AmassDataModule
from datamodules.amass.prepare import PrepareReport
from experiments.config import CONFIGS_DIR, load_config
from experiments.train_gan import run_train_gan
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.coverage import evaluate_coverage
from pose_prior.priors import load_prior
from tests.fixtures.gan import tiny_gan_overrides


def test_coverage_callback_during_gan_training(tmp_path: Path, demo_amass_tree: Path,
                                               prepared_amass: PrepareReport) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    sizes = dict(num_generated=300, num_references=20, num_precision=10, chunk_size=128, seed=1)
    cfg = load_config(CONFIGS_DIR / "gan_s.yaml", tiny_gan_overrides(
        tmp_path / "run", demo_amass_tree, prepared, "trainer.max_epochs=1", "coverage.every_n_epochs=1",
        "coverage.tsne_points=30", "coverage.nearest_levels=[8]", *[f"coverage.{k}={v}" for k, v in sizes.items()]))
    run = run_train_gan(cfg)
    record = json.loads((run / "coverage" / "epoch0000" / "coverage.json").read_text())
    assert (run / "coverage" / "epoch0000" / "coverage_tsne.png").is_file()
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    logged = [float(r["coverage/test/precision_median_mm"]) for r in rows if r.get("coverage/test/precision_median_mm")]
    assert logged == [pytest.approx(record["test"]["precision"]["median_mm"], rel=1e-6)]
    dm = AmassDataModule(prepared)
    dm.setup()
    direct = evaluate_coverage(load_prior(run / "prior.pt"), load_body_model("open-light", "smpl"),
                               dm.dataset("train"), dm.dataset("test"), nearest_kwargs={"levels": (8,)}, **sizes)
    for split in ("train", "test"):
        for metric in ("recall", "precision"):
            assert record[split][metric]["mean_mm"] == pytest.approx(getattr(direct, metric)[split].stats()["mean_mm"],
                                                                      abs=1e-4)
