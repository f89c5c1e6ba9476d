"""Latent spaces: sampling supports, projections, SLERP against the closed form (float64 references)."""

from __future__ import annotations

import math

import pytest
import torch

from pose_prior.priors.latent import NormalLatent, SphericalLatent, UniformLatent, make_latent


def test_make_latent_names_and_errors() -> None:
    assert isinstance(make_latent("s", 8), SphericalLatent)
    assert isinstance(make_latent("U", 8), UniformLatent)
    assert isinstance(make_latent("N", 8), NormalLatent)
    with pytest.raises(ValueError, match="unknown latent space"):
        make_latent("Q", 8)


def test_spherical_samples_have_unit_norm_and_uniform_box() -> None:
    g = torch.Generator().manual_seed(0)
    s = make_latent("S", 32).sample(4096, generator=g)
    assert s.shape == (4096, 32)
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(4096), atol=1e-6, rtol=0)
    # isotropic: the mean direction is ~0 (|mean| ~ 1/sqrt(n))
    assert s.mean(0).norm() < 0.05
    u = make_latent("U", 32).sample(4096, generator=g)
    assert u.min() >= -1 and u.max() <= 1 and u.min() < -0.99 and u.max() > 0.99
    n = make_latent("N", 32).sample(4096, generator=g)
    assert abs(n.std().item() - 1.0) < 0.02


def test_sampling_is_reproducible_with_a_generator() -> None:
    lat = make_latent("S", 16)
    a = lat.sample(5, generator=torch.Generator().manual_seed(3))
    b = lat.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert lat.sample(3, dtype=torch.float64).dtype == torch.float64


def test_projections() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.5]])
    torch.testing.assert_close(make_latent("S", 2).project(z), torch.tensor([[0.6, 0.8], [1.0, 0.0], [-0.9701425, 0.2425356]]))
    torch.testing.assert_close(make_latent("U", 2).project(z), torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, 0.5]]))
    assert torch.equal(make_latent("N", 2).project(z), z)


def _angle64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1, 1))


def test_slerp_closed_form_constant_speed_unit_norm() -> None:
    lat = make_latent("S", 32)
    g = torch.Generator().manual_seed(1)
    z0, z1 = lat.sample(16, generator=g), lat.sample(16, generator=g)
    steps = 11
    path = lat.interpolate(z0, z1, steps)  # (16, 11, 32)
    assert path.shape == (16, steps, 32)
    torch.testing.assert_close(path[:, 0], z0, atol=1e-6, rtol=0)
    torch.testing.assert_close(path[:, -1], z1, atol=1e-6, rtol=0)
    torch.testing.assert_close(path.norm(dim=-1), torch.ones(16, steps), atol=1e-6, rtol=0)
    theta = _angle64(z0, z1)  # (16,)
    consecutive = _angle64(path[:, :-1], path[:, 1:])  # (16, 10)
    torch.testing.assert_close(consecutive, (theta / (steps - 1))[:, None].expand(-1, steps - 1), atol=2e-4, rtol=0)
    # closed form (Eq. 8) in float64
    t = torch.linspace(0, 1, steps, dtype=torch.float64)[None, :, None]
    th = theta[:, None, None]
    ref = (torch.sin((1 - t) * th) * z0.double()[:, None] + torch.sin(t * th) * z1.double()[:, None]) / torch.sin(th)
    torch.testing.assert_close(path.double(), ref, atol=1e-6, rtol=0)
    # single pair -> (steps, dim)
    torch.testing.assert_close(lat.interpolate(z0[0], z1[0], steps), path[0])


def test_slerp_nearly_equal_endpoints() -> None:
    lat = make_latent("S", 8)
    z0 = lat.project(torch.randn(8))
    z1 = lat.project(z0 + 1e-8 * torch.randn(8, dtype=torch.float64).float())
    path = lat.interpolate(z0, z1, 5)
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, z0.expand(5, -1), atol=1e-6, rtol=0)
    same = lat.interpolate(z0, z0.clone(), 4)
    torch.testing.assert_close(same, z0.expand(4, -1), atol=1e-7, rtol=0)


def test_slerp_nearly_opposite_endpoints_follow_a_deterministic_half_circle() -> None:
    lat = make_latent("S", 6)
    z0 = lat.project(torch.tensor([0.3, -0.5, 0.05, 0.7, 0.2, -0.1]))
    for z1 in (-z0, lat.project(-z0 + torch.tensor([1e-9, 0, 0, 0, 0, 0]))):
        path = lat.interpolate(z0, z1, 9)
        assert torch.isfinite(path).all()
        torch.testing.assert_close(path.norm(dim=-1), torch.ones(9), atol=1e-6, rtol=0)
        torch.testing.assert_close(path[-1], -z0, atol=1e-6, rtol=0)
        steps = _angle64(path[:-1], path[1:])
        torch.testing.assert_close(steps, torch.full((8,), math.pi / 8, dtype=torch.float64), atol=1e-5, rtol=0)
        # the documented great circle: through e_k with k = argmin |z0_k| (here k = 2)
        e = torch.zeros(6)
        e[2] = 1
        tangent = e - (e @ z0) * z0
        torch.testing.assert_close(path[4], tangent / tangent.norm(), atol=1e-6, rtol=0)
    again = lat.interpolate(z0, -z0, 9)
    assert torch.equal(again, lat.interpolate(z0, -z0, 9))


def test_linear_interpolation_for_uniform_and_normal() -> None:
    for name in "UN":
        lat = make_latent(name, 4)
        z0, z1 = torch.tensor([-1.0, 0.5, 0.0, 1.0]), torch.tensor([1.0, -0.5, 0.25, 1.0])
        path = lat.interpolate(z0, z1, 5)
        ref = torch.stack([z0 + (z1 - z0) * k / 4 for k in range(5)])
        torch.testing.assert_close(path, ref)


def test_interpolate_rejects_bad_shapes() -> None:
    lat = make_latent("S", 4)
    with pytest.raises(ValueError, match="dim=4"):
        lat.interpolate(torch.zeros(3), torch.zeros(3), 5)
    with pytest.raises(ValueError, match="steps >= 2"):
        lat.interpolate(torch.ones(4), torch.ones(4), 1)
