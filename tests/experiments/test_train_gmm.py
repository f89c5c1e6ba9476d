"""GMM baseline runner: fit on the seeded train subsample (against scikit-learn), gmm_fit.json, gmm_08.pkl conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from datamodules.amass.prepare import read_manifest
from experiments.config import CONFIGS_DIR, load_config
from experiments.train_gmm import read_rows, run_train_gmm
from pose_prior.priors import GMMPrior, load_prior
from pose_prior.rows import sample_rows
from tests.pose_prior.test_gmm import random_mixture, smplify_penalty_reference, write_gmm08

FIT = dict(n_components=4, max_iter=100, tol=1e-3, reg_covar=1e-4)


def gmm_config(tmp_path: Path, amass_dir: Path, prepared_dir: Path, *extra: str):
    return load_config(
        CONFIGS_DIR / "gmm.yaml",
        [f"output_dir={tmp_path / 'run'}", f"data.amass_dir={amass_dir}", f"data.prepared_dir={prepared_dir}",
         "seed=3", "gmm.num_threads=1", *(f"gmm.{k}={v}" for k, v in FIT.items()), *extra],
    )


def split_array(prepared_dir: Path, split: str) -> np.ndarray:
    manifest = read_manifest(prepared_dir)
    return np.load(Path(prepared_dir) / manifest["splits"][split]["array"])  # the whole (small) split


def test_fit_matches_sklearn_on_the_same_seeded_subsample(tmp_path: Path, demo_amass_tree: Path, prepared_amass):
    prepared = Path(prepared_amass.prepared_dir)
    cfg = gmm_config(tmp_path, demo_amass_tree, prepared, "gmm.max_samples=500", "gmm.eval_max_samples=null")
    run = run_train_gmm(cfg)

    train = split_array(prepared, "train")  # (960, 63) float32
    ids = np.sort(np.random.default_rng(3).choice(len(train), size=500, replace=False))
    poses = train[ids].astype(np.float64)
    reference = GaussianMixture(covariance_type="full", random_state=3, **FIT).fit(poses)

    prior = load_prior(run / "prior.pt")
    assert isinstance(prior, GMMPrior) and prior.latent_type == "pose" and prior.gmm.num_components == 4
    got = prior.log_prob(torch.from_numpy(poses)).numpy()
    np.testing.assert_allclose(got, reference.score_samples(poses), rtol=1e-9, atol=1e-7)

    record = json.loads((run / "gmm_fit.json").read_text())
    assert record["mode"] == "fit" and record["n_used"] == 500 and record["train_rows"] == len(train)
    assert record["loglik_per_sample"]["train"] == pytest.approx(reference.score(poses), rel=1e-9)
    valid = split_array(prepared, "valid").astype(np.float64)
    assert record["n_scored"]["valid"] == len(valid)
    assert record["loglik_per_sample"]["valid"] == pytest.approx(reference.score(valid), rel=1e-9)
    assert record["seconds"]["fit"] > 0
    assert prior.provenance["data"]["n_used"] == 500 and prior.provenance["config"]["gmm"]["max_samples"] == 500


class RecordingDataset:
    """Stands in for a memory-mapped split: serves rows and records which row ids were asked for."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.requested = rows, []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, ids: np.ndarray) -> torch.Tensor:
        self.requested.append(np.asarray(ids).copy())
        return torch.from_numpy(self.rows[ids])


def test_subsample_reads_only_the_sorted_drawn_rows() -> None:
    rows = np.random.default_rng(0).normal(size=(10_000, 63)).astype(np.float32)
    ds = RecordingDataset(rows)
    ids = sample_rows(len(ds), 700, seed=5)
    out = read_rows(ds, ids, chunk=256)
    asked = np.concatenate(ds.requested)
    assert len(ds.requested) == 3 and len(asked) == 700  # chunked, never the whole array
    assert (np.diff(asked) > 0).all()  # sorted, no repeats: sequential reads of the memmap
    np.testing.assert_array_equal(asked, np.sort(np.random.default_rng(5).choice(10_000, 700, replace=False)))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, rows[asked].astype(np.float64))
    np.testing.assert_array_equal(sample_rows(50, 700, seed=5), np.arange(50))  # fewer rows: all of them
    np.testing.assert_array_equal(sample_rows(50, None, seed=5), np.arange(50))


@pytest.mark.parametrize("reduce", ["marginalise", "zero_pad"])
def test_smplify_pickle_is_converted_without_reading_data(tmp_path: Path, reduce: str) -> None:
    means, covs, weights = random_mixture(k=8, d=69, seed=11)
    pkl = tmp_path / "gmm_08.pkl"
    write_gmm08(pkl, means, covs, weights, style="py2")
    missing = tmp_path / "no_such_dir"  # the conversion must not prepare or read any data
    cfg = gmm_config(tmp_path, missing, missing, f"gmm.smplify_pkl={pkl}", f"gmm.reduce={reduce}")
    run = run_train_gmm(cfg)
    assert not missing.exists()
    prior = load_prior(run / "prior.pt")
    assert isinstance(prior, GMMPrior) and prior.gmm.pose_dim == 63
    theta = np.random.default_rng(12).normal(0.0, 0.5, size=(10, 63))
    got = prior.prior_penalty(torch.from_numpy(theta)).numpy()
    if reduce == "marginalise":
        expected = smplify_penalty_reference(theta, means[:, :63], covs[:, :63, :63], weights)
        comps = np.stack([multivariate_normal(means[k, :63], covs[k, :63, :63]).logpdf(theta) for k in range(8)], 1)
        np.testing.assert_allclose(prior.log_prob(torch.from_numpy(theta)).numpy(),
                                   logsumexp(comps + np.log(weights), axis=1), rtol=1e-10)
    else:
        expected = smplify_penalty_reference(np.concatenate([theta, np.zeros((10, 6))], 1), means, covs, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    record = json.loads((run / "gmm_fit.json").read_text())
    assert record["mode"] == "smplify" and record["reduce"] == reduce
    assert record["model_dim"] == (63 if reduce == "marginalise" else 69)
    assert prior.provenance["source"] == str(pkl) and prior.provenance["reduce"] == reduce


def test_bad_smplify_path_and_reduction_are_reported(tmp_path: Path) -> None:
    cfg = gmm_config(tmp_path, tmp_path, tmp_path, f"gmm.smplify_pkl={tmp_path / 'gmm_08.pkl'}")
    with pytest.raises(FileNotFoundError, match=r"gmm\.smplify_pkl.*gmm_08\.pkl"):
        run_train_gmm(cfg)
    with pytest.raises(ValueError, match=r"gmm\.reduce.*truncate.*marginalise"):  # ConfigError, when read
        gmm_config(tmp_path, tmp_path, tmp_path, "gmm.reduce=truncate")


def test_a_used_run_folder_is_refused_unless_overwrite(tmp_path: Path):
    """The GMM fit is one shot (nothing to resume): a second run into its folder is refused, naming
    overwrite=true, and leaves the first prior in place; overwrite=true replaces it."""
    from experiments.config import ConfigError

    means, covs, weights = random_mixture(4, 69, seed=1)
    pkl = tmp_path / "gmm_08.pkl"
    write_gmm08(pkl, means, covs, weights, style="py2")
    missing = tmp_path / "none"
    run = run_train_gmm(gmm_config(tmp_path, missing, missing, f"gmm.smplify_pkl={pkl}"))
    before = (run / "prior.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"overwrite=true") as err:
        run_train_gmm(gmm_config(tmp_path, missing, missing, f"gmm.smplify_pkl={pkl}", "gmm.reduce=zero_pad"))
    assert "resume" not in str(err.value)
    assert (run / "prior.pt").read_bytes() == before
    run_train_gmm(gmm_config(tmp_path, missing, missing, f"gmm.smplify_pkl={pkl}", "gmm.reduce=zero_pad", "overwrite=true"))
    assert load_prior(run / "prior.pt").provenance["config"]["gmm"]["reduce"] == "zero_pad"
