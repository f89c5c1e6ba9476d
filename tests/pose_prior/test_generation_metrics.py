"""Generation metrics (FID, PRDC, APD, dNN) against reference implementations, and the train-statistics cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from pose_prior.evaluation.diversity import apd, dnn
from pose_prior.evaluation.frechet import fid, gaussian_moments
from pose_prior.evaluation.generation import generate_poses, generation_metrics
from pose_prior.evaluation.prdc import knn_radii, prdc
from pose_prior.evaluation.train_statistics import load_train_statistics
from pose_prior.priors import GANPrior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent


def scipy_fid(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """The FID code DPoser-X / NRDF use (pytorch-fid's calculate_frechet_distance), on raw vectors."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(loc=0.3, size=(300, 12)) @ rng.normal(size=(12, 12))
    assert fid(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-8, abs=1e-10)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)


def test_moments_in_chunks_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(loc=50.0, scale=0.1, size=(1000, 5))  # |mean| >> std: the shifted sums keep the covariance
    mu, cov = gaussian_moments(x[i:i + 97] for i in range(0, 1000, 97))
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-15)


def test_fid_of_rank_deficient_covariances_is_finite_and_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8))  # rank 3 in 8-d: singular covariance product
    b = rng.normal(size=(200, 8))
    value = fid(a, b)
    assert math.isfinite(value)
    assert value == pytest.approx(scipy_fid(a, b), rel=1e-6)


def test_prdc_equals_reference_package_and_chunking_changes_nothing() -> None:
    ref = pytest.importorskip("prdc")
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 8))
    fake = rng.normal(loc=0.2, scale=1.2, size=(450, 8))
    expected = ref.compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    whole = prdc(real, fake, k=3, chunk=10_000)
    for key in ("precision", "recall", "density", "coverage"):
        assert whole[key] == pytest.approx(float(expected[key]), abs=1e-12), key
    assert prdc(real, fake, k=3, chunk=37) == whole
    assert prdc(real, fake, k=3, chunk=64, backend="faiss") == whole


def test_knn_radii_chunked_equal_dense() -> None:
    x = torch.randn(200, 6, dtype=torch.float64)
    d = torch.cdist(x, x)
    expected = torch.sort(d, dim=1).values[:, 4]  # k = 4: the 5th smallest, self included
    torch.testing.assert_close(knn_radii(x, 4, chunk=33), expected, atol=1e-12, rtol=0)


def test_apd_equals_python_loop() -> None:
    joints = torch.randn(9, 22, 3, dtype=torch.float64)
    total, pairs = 0.0, 0
    for i in range(9):
        for j in range(9):
            if i != j:
                total += sum(math.dist(joints[i, k].tolist(), joints[j, k].tolist()) for k in range(22)) / 22
                pairs += 1
    assert apd(joints, chunk=4) == pytest.approx(total / pairs, rel=1e-12)


def _quat(aa: list[float]) -> np.ndarray:
    """Axis-angle -> (w, x, y, z), float64, written out."""
    angle = math.sqrt(sum(v * v for v in aa))
    if angle == 0:
        return np.array([1.0, 0, 0, 0])
    axis = [v / angle for v in aa]
    return np.array([math.cos(angle / 2)] + [math.sin(angle / 2) * v for v in axis])


def test_dnn_equals_python_loop() -> None:
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(7, 63, generator=g, dtype=torch.float64)
    train = (torch.randn(23, 63, generator=g, dtype=torch.float64) * 0.8).numpy()
    dist, idx = dnn(samples, train, chunk=3, train_chunk=5)
    for s in range(7):
        costs = []
        for t in range(23):
            c = 0.0
            for j in range(21):
                q1 = _quat(samples[s, 3 * j:3 * j + 3].tolist())
                q2 = _quat(train[t, 3 * j:3 * j + 3].tolist())
                c += 2 * math.acos(min(1.0, abs(float(q1 @ q2))))
            costs.append(c)
        assert dist[s].item() == pytest.approx(min(costs), rel=1e-10)
        assert idx[s].item() == int(np.argmin(costs))
    assert dnn(torch.from_numpy(train[:4]), train)[0].abs().max() < 1e-6  # a train pose is its own neighbour


def _prior() -> GANPrior:
    torch.manual_seed(5)
    gen = PoseGenerator()
    with torch.no_grad():
        gen.bodyprior_dec_out.bias.copy_(torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(21))
    return GANPrior(gen, make_latent("S", 32))


def test_train_statistics_cache_is_reused_and_keyed_by_the_split(tmp_path, light_body_model) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "body_pose.npy"
    np.save(path, (rng.normal(size=(500, 63)) * 0.3).astype(np.float32))
    cache = tmp_path / "train_generation_stats.npz"
    logs: list[str] = []
    s1 = load_train_statistics(path, cache, num_references=100, body_model=light_body_model, log=logs.append)
    assert len(logs) == 2 and cache.is_file()
    s2 = load_train_statistics(path, cache, num_references=100, body_model=light_body_model, log=logs.append)
    assert len(logs) == 2  # both parts from the cache
    np.testing.assert_array_equal(s1.pose_cov, s2.pose_cov)
    np.testing.assert_array_equal(s1.joint_cov, s2.joint_cov)
    data = np.load(path)
    np.testing.assert_allclose(s1.pose_cov, np.cov(data.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    assert s1.reference.shape == (100, 63)
    np.save(path, (rng.normal(size=(500, 63)) * 0.3).astype(np.float32))  # a different split: recomputed
    s3 = load_train_statistics(path, cache, num_references=100, log=logs.append)
    assert len(logs) == 3 and s3.sha256 != s1.sha256


def test_generation_metrics_both_conventions(light_body_model) -> None:
    prior = _prior()
    train = generate_poses(prior, 600, seed=11).numpy()
    m = generation_metrics(prior, light_body_model, train, num_samples=400, seed=1, apd_samples=50,
                           dnn_samples=20, chunk=128)
    assert m["convention"] == "dposer-x" and m["num_samples"] == 400
    assert 0 <= m["fid"] < 0.5  # same distribution as the "train" split
    assert m["precision"] > 0.5 and m["recall"] > 0.5
    assert m["apd_cm"] > 0 and m["dnn"] > 0 and m["dnn_samples"] == 20
    again = generation_metrics(prior, light_body_model, train, num_samples=400, seed=1, apd_samples=50,
                               dnn_samples=20, chunk=300)
    assert again == m  # seeded; independent of the chunk size
    n = generation_metrics(prior, light_body_model, train, convention="nrdf", num_samples=100, seed=1)
    assert n["convention"] == "nrdf" and n["num_samples"] == 100 and n["fid"] >= 0 and n["apd_cm"] > 0
