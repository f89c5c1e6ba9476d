"""GMM prior: density and SMPLify penalty against float64 scipy/numpy references, sampling, loading."""

from __future__ import annotations

import codecs
import io
import math
import pickle

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pose_prior.priors.gmm.model import GaussianMixturePrior, fit_gmm, load_smplify_gmm


def random_mixture(k: int, d: int, seed: int, scale: float = 0.3):
    """K random SPD covariances with varied determinants, means, normalised weights (float64 numpy)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 0.5, size=(k, d))
    covs = np.empty((k, d, d))
    for i in range(k):
        a = rng.normal(size=(d, d)) * scale / math.sqrt(d)
        covs[i] = a @ a.T + (0.01 + 0.02 * i) * np.eye(d)
    weights = rng.uniform(0.5, 2.0, size=k)
    return means, covs, weights / weights.sum()


def smplify_penalty_reference(theta: np.ndarray, means, covs, weights) -> np.ndarray:
    """smplify-x MaxMixturePrior.merged_log_likelihood, transcribed literally in float64 numpy."""
    d = means.shape[1]
    precisions = np.stack([np.linalg.inv(c) for c in covs])
    sqrdets = np.array([np.sqrt(np.linalg.det(c)) for c in covs])
    const = (2 * np.pi) ** (d / 2.0)
    nll_weights = weights / (const * (sqrdets / sqrdets.min()))
    diff = theta[:, None, :] - means[None]  # (B, K, D)
    quad = np.einsum("bki,kij,bkj->bk", diff, precisions, diff)
    return (0.5 * quad - np.log(nll_weights)).min(axis=1)


@pytest.fixture(scope="module")
def mixture63():
    return random_mixture(k=8, d=63, seed=1)


def test_log_prob_matches_scipy_mixture(mixture63):
    means, covs, weights = mixture63
    prior = GaussianMixturePrior(means, covs, weights)
    theta = np.random.default_rng(2).normal(0.0, 0.6, size=(50, 63))
    comps = np.stack(
        [multivariate_normal(means[k], covs[k]).logpdf(theta) + np.log(weights[k]) for k in range(8)], axis=1
    )
    expected = logsumexp(comps, axis=1)
    got = prior.log_prob(torch.from_numpy(theta)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-8)
    # float32 input: float64 internally, so only the input rounding matters
    got32 = prior.log_prob(torch.from_numpy(theta).float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.double().numpy(), expected, rtol=1e-5)


def test_max_mixture_penalty_matches_smplify_formula_and_scipy(mixture63):
    means, covs, weights = mixture63
    prior = GaussianMixturePrior(means, covs, weights)
    theta = np.random.default_rng(3).normal(0.0, 0.6, size=(50, 63))
    got = prior.max_mixture_penalty(torch.from_numpy(theta)).numpy()
    np.testing.assert_allclose(got, smplify_penalty_reference(theta, means, covs, weights), rtol=1e-9)
    # = -max_k log(w_k N_k) - log min_j sqrt(det Sigma_j), with scipy's densities
    comps = np.stack(
        [multivariate_normal(means[k], covs[k]).logpdf(theta) + np.log(weights[k]) for k in range(8)], axis=1
    )
    min_half_logdet = min(0.5 * np.linalg.slogdet(c)[1] for c in covs)
    np.testing.assert_allclose(got, -comps.max(axis=1) - min_half_logdet, rtol=1e-10, atol=1e-8)
    assert torch.equal(prior(torch.from_numpy(theta)), prior.max_mixture_penalty(torch.from_numpy(theta)))


def test_penalty_gradient_flows_to_theta(mixture63):
    prior = GaussianMixturePrior(*mixture63)
    theta = torch.zeros(4, 63, requires_grad=True)
    prior.max_mixture_penalty(theta).sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0


def test_mean_pose_is_weighted_mean(mixture63):
    means, covs, weights = mixture63
    expected = sum(weights[k] * means[k] for k in range(8))
    np.testing.assert_allclose(GaussianMixturePrior(means, covs, weights).mean_pose().numpy(), expected)


def test_state_dict_round_trip_recomputes_cholesky(mixture63):
    prior = GaussianMixturePrior(*mixture63)
    other = GaussianMixturePrior(*random_mixture(8, 63, seed=9))
    other.load_state_dict(prior.state_dict())
    theta = torch.randn(5, 63, dtype=torch.float64)
    torch.testing.assert_close(other.log_prob(theta), prior.log_prob(theta))
    rebuilt = GaussianMixturePrior.from_state_dict(prior.state_dict())
    torch.testing.assert_close(rebuilt.max_mixture_penalty(theta), prior.max_mixture_penalty(theta))


def test_rejects_wrong_shapes_and_non_spd(mixture63):
    means, covs, weights = mixture63
    prior = GaussianMixturePrior(means, covs, weights)
    with pytest.raises(ValueError, match=r"\(B, 63\)"):
        prior.log_prob(torch.zeros(2, 69))
    bad = covs.copy()
    bad[3] = -np.eye(63)
    with pytest.raises(ValueError, match=r"component\(s\) \[3\]"):
        GaussianMixturePrior(means, bad, weights)


def test_sampling_reproduces_mixture_mean_and_covariance():
    """n = 50k samples: every mean / covariance entry within 6 standard errors (estimated from the samples)."""
    means, covs, weights = random_mixture(k=4, d=63, seed=4)
    prior = GaussianMixturePrior(means, covs, weights)
    n = 50_000
    x = prior.sample(n, generator=torch.Generator().manual_seed(0)).numpy()
    assert x.shape == (n, 63) and x.dtype == np.float64
    mix_mean = weights @ means
    mix_cov = np.einsum("k,kij->ij", weights, covs + np.einsum("ki,kj->kij", means, means)) - np.outer(
        mix_mean, mix_mean
    )
    se_mean = np.sqrt(np.diag(mix_cov) / n)
    assert (np.abs(x.mean(0) - mix_mean) < 6 * se_mean).all()
    centred = x - mix_mean
    emp_cov = centred.T @ centred / n
    # standard error of each covariance entry = std of the products / sqrt(n) (no Gaussian assumption)
    sq = centred**2
    se_cov = np.sqrt(np.maximum(sq.T @ sq / n - emp_cov**2, 0.0) / n)
    assert (np.abs(emp_cov - mix_cov) < 6 * se_cov + 1e-12).all()
    # reproducible with a seeded generator
    again = prior.sample(10, generator=torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(again, prior.sample(10, generator=torch.Generator().manual_seed(0)).numpy())


def test_fit_gmm_recovers_a_separated_mixture():
    """Two well-separated 63-d Gaussians, 4000 samples: fitted weights/means within sampling error."""
    rng = np.random.default_rng(5)
    mu = np.stack([np.full(63, -1.0), np.full(63, 1.0)])
    sd = 0.2
    labels = rng.random(4000) < 0.3
    data = np.where(labels[:, None], mu[0], mu[1]) + sd * rng.normal(size=(4000, 63))
    prior = fit_gmm(torch.from_numpy(data).float(), n_components=2, seed=0)
    order = torch.argsort(prior.means[:, 0])
    w = prior.weights[order].numpy()
    np.testing.assert_allclose(w, [labels.mean(), 1 - labels.mean()], atol=1e-6)
    # mean error ~ sd / sqrt(1200) = 0.006; allow 5x
    np.testing.assert_allclose(prior.means[order].numpy(), mu, atol=0.03)
    np.testing.assert_allclose(torch.diagonal(prior.covariances, dim1=1, dim2=2).numpy(), sd**2, rtol=0.2)
    sub = fit_gmm(data, n_components=2, max_samples=500, seed=1)
    assert sub.means.shape == (2, 63) and sub.means.dtype == torch.float64


# --- the published file format -------------------------------------------------------------------
class Py2StylePickler(pickle._Pickler):
    """Protocol 0 as Python 2 wrote it: byte and text strings as STRING (S'...') opcodes, no _codecs."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        self.write(b"S'" + codecs.escape_encode(raw)[0] + b"'\n")  # escape_encode escapes quotes
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def write_gmm08(path, means, covs, weights, style: str = "py3") -> None:
    """gmm_08.pkl layout: protocol-0 pickle of a dict of numpy arrays (covars first).

    style "py3": pickle.dumps(..., protocol=0) here; "py3-numpy1": same with numpy 1's module name;
    "py2": as Python 2 + numpy 1 wrote the published file (S'...' strings, numpy.core.multiarray).
    """
    data = {"covars": covs, "means": means, "weights": weights}
    if style == "py2":
        buf = io.BytesIO()
        Py2StylePickler(buf, protocol=0).dump(data)
        blob = buf.getvalue()
        assert b"_codecs" not in blob and b"\nV" not in blob
    else:
        blob = pickle.dumps(data, protocol=0)
    if style != "py3":
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(blob)


@pytest.fixture(scope="module")
def mixture69():
    return random_mixture(k=8, d=69, seed=6)


@pytest.mark.parametrize("style", ["py3", "py3-numpy1", "py2"])
def test_load_smplify_gmm_both_reductions(tmp_path, mixture69, style):
    means, covs, weights = mixture69
    path = tmp_path / "gmm_08.pkl"
    write_gmm08(path, means, covs, weights, style=style)
    theta = np.random.default_rng(7).normal(0.0, 0.5, size=(20, 63))

    marg = load_smplify_gmm(path)  # default: marginalise
    assert marg.model_dim == 63 and marg.pose_dim == 63
    np.testing.assert_allclose(
        marg.max_mixture_penalty(torch.from_numpy(theta)).numpy(),
        smplify_penalty_reference(theta, means[:, :63], covs[:, :63, :63], weights),
        rtol=1e-9,
    )
    comps = np.stack(
        [multivariate_normal(means[k, :63], covs[k, :63, :63]).logpdf(theta) for k in range(8)], 1
    )
    np.testing.assert_allclose(
        marg.log_prob(torch.from_numpy(theta)).numpy(), logsumexp(comps + np.log(weights), axis=1), rtol=1e-10
    )

    padded = load_smplify_gmm(path, reduce="zero_pad")
    assert padded.model_dim == 69 and padded.pose_dim == 63
    theta69 = np.concatenate([theta, np.zeros((20, 6))], axis=1)
    np.testing.assert_allclose(
        padded.max_mixture_penalty(torch.from_numpy(theta)).numpy(),
        smplify_penalty_reference(theta69, means, covs, weights),
        rtol=1e-9,
    )
    np.testing.assert_allclose(padded.mean_pose().numpy(), (weights @ means)[:63])
    assert padded.sample(3).shape == (3, 63)


def test_load_smplify_gmm_refuses_forbidden_class(tmp_path):
    path = tmp_path / "evil_gmm.pkl"
    path.write_bytes(b"(dp0\nVmeans\np1\ncos\nsystem\np2\n(Vecho pwned\np3\ntp4\nRp5\ns.")
    with pytest.raises(Exception, match=r"(?s)(evil_gmm\.pkl.*os.*system|os.*system.*evil_gmm\.pkl)"):
        load_smplify_gmm(path)


def test_load_smplify_gmm_names_missing_key(tmp_path):
    path = tmp_path / "gmm_08.pkl"
    path.write_bytes(pickle.dumps({"means": np.zeros((8, 69)), "weights": np.ones(8) / 8}, protocol=0))
    with pytest.raises(KeyError, match="covars"):
        load_smplify_gmm(path)
