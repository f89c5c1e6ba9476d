"""VPoser and GMM behind the frozen-prior interface: decode/sample/invert semantics and prior files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pose_prior.evaluation.distance import mesh_distance
from pose_prior.fitting import FitSettings
from pose_prior.priors import GMMPrior, LatentPrior, PosePrior, VPoserPrior, load_prior
from pose_prior.priors.file_format import PRIOR_LOADERS
from pose_prior.priors.gmm.model import GaussianMixturePrior
from pose_prior.priors.vposer.model import VPoser
from pose_prior.rotations import axis_angle_to_matrix


class ToyBody(nn.Module):
    """Each joint's rotation applied to 4 fixed offsets: (B, 63) -> vertices (B, 84, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offsets", torch.randn(21, 4, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        rots = axis_angle_to_matrix(pose.reshape(pose.shape[0], 21, 3))  # (B, 21, 3, 3)
        return torch.einsum("bjik,jvk->bjvi", rots, self.offsets.to(pose)).reshape(pose.shape[0], -1, 3)


@pytest.fixture(scope="module")
def vposer_prior() -> VPoserPrior:
    torch.manual_seed(0)
    model = VPoser()
    with torch.no_grad():
        model.encoder_net[1].running_var.uniform_(0.5, 2.0)
    return VPoserPrior(model.eval(), provenance={"note": "random weights"})


@pytest.fixture(scope="module")
def gmm_prior() -> GMMPrior:
    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.3, size=(3, 63))
    covs = np.stack([np.eye(63) * (0.01 + 0.01 * k) for k in range(3)])
    return GMMPrior(GaussianMixturePrior(means, covs, np.array([0.2, 0.3, 0.5])))


def test_registry_has_baseline_kinds():
    assert {"gan", "vposer", "gmm"} <= set(PRIOR_LOADERS)


def test_vposer_prior_interface(vposer_prior):
    assert isinstance(vposer_prior, LatentPrior) and not vposer_prior.latent_is_pose
    assert (vposer_prior.latent_dim, vposer_prior.latent_type) == (32, "N")
    z = vposer_prior.sample(4000, generator=torch.Generator().manual_seed(1))
    assert z.shape == (4000, 32) and abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    torch.testing.assert_close(vposer_prior.decode(z[:5]), vposer_prior.vposer.decode(z[:5])["pose_body"])
    assert torch.equal(vposer_prior.project(z[:5]), z[:5])
    path = vposer_prior.interpolate(z[0], z[1], 5)
    torch.testing.assert_close(path[2], (z[0] + z[1]) / 2)
    vposer_prior.train()
    assert not vposer_prior.vposer.training  # frozen: dropout never active
    assert all(not p.requires_grad for p in vposer_prior.parameters())
    settings = FitSettings(latent_l2_weight=2.0)
    torch.testing.assert_close(vposer_prior.fit_penalty(z[:3], settings), 4.0 * (z[:3] ** 2).sum(1))
    assert vposer_prior.fit_penalty(z[:3], FitSettings()) is None  # the paper's fit: no prior term


def test_vposer_invert_starts_from_encoder_mean(vposer_prior, monkeypatch):
    seen = {}

    def fake_invert(self, body_pose, body_model, return_distance=False, init=None, **kwargs):
        seen["init"] = init
        return init

    monkeypatch.setattr(LatentPrior, "invert", fake_invert)
    pose = torch.randn(3, 63) * 0.3
    out = vposer_prior.invert(pose, ToyBody())
    torch.testing.assert_close(out, vposer_prior.vposer.encode(pose).mean)


def test_vposer_invert_improves_on_encoder_mean(vposer_prior):
    """Random weights, so only relative progress is checked: the optimisation beats its encoder start."""
    body = ToyBody()
    z_true = vposer_prior.sample(3, generator=torch.Generator().manual_seed(2))
    target = vposer_prior.decode(z_true)
    z, d = vposer_prior.invert(
        target, body, steps=20, candidates=32, restarts=2, refine_iters=10, return_distance=True
    )
    final = mesh_distance(body(vposer_prior.decode(z)), body(target))
    torch.testing.assert_close(final, d, atol=1e-5, rtol=1e-4)
    start = mesh_distance(body(vposer_prior.decode(vposer_prior.encode_mean(target))), body(target))
    assert (final < 0.5 * start).all(), (final, start)


def test_vposer_prior_file_round_trip(tmp_path, vposer_prior):
    path = tmp_path / "vposer_prior.pt"
    vposer_prior.save(path, provenance={"data": "synthetic"})
    payload = torch.load(path, weights_only=True)
    assert payload["kind"] == "vposer" and payload["provenance"]["note"] == "random weights"
    loaded = load_prior(path)
    assert isinstance(loaded, VPoserPrior)
    z = torch.randn(4, 32)
    torch.testing.assert_close(loaded.decode(z), vposer_prior.decode(z))
    x = torch.randn(4, 63) * 0.3
    torch.testing.assert_close(loaded.encode_mean(x), vposer_prior.encode_mean(x))


def test_gmm_prior_interface(gmm_prior):
    assert isinstance(gmm_prior, PosePrior) and gmm_prior.latent_is_pose
    assert (gmm_prior.latent_dim, gmm_prior.latent_type) == (63, "pose")
    z = gmm_prior.sample(20000, generator=torch.Generator().manual_seed(3))
    assert z.shape == (20000, 63) and z.dtype == torch.float32
    expected_mean = gmm_prior.gmm.mean_pose().float()
    # per-coordinate std <= sqrt(0.03 + 0.09 spread) < 0.35: 5 standard errors = 5 * 0.35 / sqrt(20000) = 0.0124
    assert (z.mean(0) - expected_mean).abs().max() < 0.0124
    assert torch.equal(gmm_prior.decode(z[:4]), z[:4]) and torch.equal(gmm_prior.project(z[:4]), z[:4])
    torch.testing.assert_close(gmm_prior.decode_matrices(z[:4]), axis_angle_to_matrix(z[:4].view(4, 21, 3)))
    torch.testing.assert_close(gmm_prior.interpolate(z[0], z[1], 3)[1], (z[0] + z[1]) / 2)
    torch.testing.assert_close(
        gmm_prior.prior_penalty(z[:4]), gmm_prior.gmm.max_mixture_penalty(z[:4].double()).float()
    )
    inv, d = gmm_prior.invert(z[:4], ToyBody(), return_distance=True)
    assert torch.equal(inv, z[:4]) and torch.equal(d, torch.zeros(4))
    torch.testing.assert_close(gmm_prior.mean_pose(), expected_mean)


def test_gmm_prior_file_round_trip(tmp_path, gmm_prior):
    path = tmp_path / "gmm_prior.pt"
    gmm_prior.save(path, provenance={"data": "synthetic"})
    assert torch.load(path, weights_only=True)["kind"] == "gmm"
    loaded = load_prior(path)
    assert isinstance(loaded, GMMPrior)
    x = torch.randn(5, 63, dtype=torch.float64) * 0.3
    torch.testing.assert_close(loaded.gmm.log_prob(x), gmm_prior.gmm.log_prob(x))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(loaded.sample(3, generator=g1), gmm_prior.sample(3, generator=g2))


def test_gmm_prior_fit_on_poses():
    poses = torch.randn(600, 63) * 0.2
    prior = GMMPrior.fit(poses, n_components=2, seed=0)
    assert prior.gmm.num_components == 2 and prior.provenance["fit"]["n_components"] == 2
    torch.testing.assert_close(prior.mean_pose(), poses.mean(0), atol=1e-5, rtol=0)
