"""`pose-prior eval_h36m` on a tiny synthetic file: h36m.json with a row per prior (GAN-S file, GMM file, none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.config import CONFIGS_DIR, load_config
from experiments.eval_h36m import prior_name, run_eval_h36m
from pose_prior.priors import GMMPrior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.gan.prior import save_prior
from pose_prior.priors.latent import make_latent


@pytest.fixture()
def prior_files(tmp_path: Path) -> list[Path]:
    torch.manual_seed(0)
    gan = tmp_path / "gan_s" / "prior.pt"
    gan.parent.mkdir()
    save_prior(gan, PoseGenerator(hidden=32), make_latent("S", 32))
    gmm = tmp_path / "gmm" / "prior.pt"
    gmm.parent.mkdir()
    GMMPrior.fit(torch.randn(300, 63, dtype=torch.float64) * 0.2, n_components=2).save(gmm)
    return [gan, gmm]


def test_eval_writes_a_row_per_prior(tmp_path: Path, prior_files: list[Path], prepared_amass) -> None:
    out = tmp_path / "eval"
    cfg = load_config(CONFIGS_DIR / "eval_h36m.yaml", [
        f"output_dir={out}", f"priors=[{prior_files[0]},{prior_files[1]}]", "body_model.path=open-light",
        f"synthetic.file={tmp_path / 'syn.npz'}", "synthetic.frames=4",
        f"synthetic.amass.prepared_dir={prepared_amass.prepared_dir}", "data.batch_size=2",
        "fitting.body_iters=3", "fitting.camera_iters=2", "logger.wandb_mode=offline", "trainer.progress_bar=false",
    ])
    run_eval_h36m(cfg)
    report = json.loads((out / "h36m.json").read_text())
    assert set(report["results"]) == {"gan_s", "gmm", "none"}
    for name, row in report["results"].items():
        assert row["frames"] == 4
        assert 0 < row["p_mpjpe_mm"] < row["mpjpe_mm"] + 1e-9  # Procrustes never increases the error
        fits = dict(__import__("numpy").load(out / name / "fits.npz"))
        assert abs(fits["p_mpjpe"].mean() - row["p_mpjpe_mm"]) < 1e-9
    gan_s, gmm = report["results"]["gan_s"], report["results"]["gmm"]
    assert (gan_s["kind"], gan_s["latent"], gmm["kind"], gmm["latent"]) == ("gan", "S", "gmm", "pose")
    assert report["data"]["synthetic"] is True and report["comparable_with_paper"] is False
    assert (out / "csv" / "metrics.csv").is_file()
    assert list((out / "wandb").glob("offline-run-*"))


def test_dtype_is_checked_and_reaches_body_model_and_prior(prior_files: list[Path]) -> None:
    from experiments.config import ConfigError
    from experiments.eval_h36m import _load, fitting_dtype

    with pytest.raises(ConfigError, match="dtype.*float16.*float32.*float64"):  # when the config is read
        load_config(CONFIGS_DIR / "eval_h36m.yaml", ["dtype=float16"])
    assert fitting_dtype("float64") is torch.float64
    assert _load(str(prior_files[0]), torch.float64).dtype == torch.float64


def test_prior_names() -> None:
    assert prior_name("none") == "none"
    assert prior_name("outputs/runs/gan_s/prior.pt") == "gan_s"
    assert prior_name("x/vposer_v2.pt") == "vposer_v2"


@pytest.mark.slow
@pytest.mark.ddp
def test_two_processes_fit_the_same_frames_as_one(tmp_path: Path, prior_files: list[Path], prepared_amass) -> None:
    """KeypointFittingModule under ddp_spawn (2 CPU processes, gloo): each rank fits its shard, and the merged
    per-frame results equal a single-process run. In float64 (dtype=float64) fits are per-sample independent
    to the last bits; in float32 other batch companions change the last bits of the matrix products."""
    common = [
        f"priors=[{prior_files[0]}]", "include_none=false", "body_model.path=open-light",
        f"synthetic.file={tmp_path / 'syn.npz'}", "synthetic.frames=6",
        f"synthetic.amass.prepared_dir={prepared_amass.prepared_dir}", "data.batch_size=2",
        "fitting.body_iters=3", "fitting.camera_iters=2", "logger.wandb_mode=disabled", "trainer.progress_bar=false",
        "trainer.accelerator=cpu", "dtype=float64",
    ]
    one = tmp_path / "one"
    run_eval_h36m(load_config(CONFIGS_DIR / "eval_h36m.yaml", [f"output_dir={one}", *common]))
    two = tmp_path / "two"
    run_eval_h36m(load_config(CONFIGS_DIR / "eval_h36m.yaml", [
        f"output_dir={two}", *common, "trainer.devices=2", "trainer.strategy=ddp_spawn"]))
    import numpy as np

    a, b = np.load(one / "gan_s" / "fits.npz"), np.load(two / "gan_s" / "fits.npz")
    assert len(a["p_mpjpe"]) == len(b["p_mpjpe"]) == 6
    np.testing.assert_allclose(b["p_mpjpe"], a["p_mpjpe"], atol=1e-9, rtol=0)  # mm, on errors of ~300 mm
    np.testing.assert_allclose(b["body_pose"], a["body_pose"], atol=1e-10, rtol=0)  # rad
    # every merged frame is its own single-process counterpart, not a neighbour's (shard order restored)
    gaps = np.abs(b["body_pose"][:, None] - a["body_pose"][None]).max(axis=2)  # (6, 6)
    assert (gaps.argmin(axis=1) == np.arange(6)).all()
