"""Shape priors (paper supplement D): networks, losses, the prior kinds, the disentangled pair, shape coverage."""

from __future__ import annotations

import torch

from pose_prior.evaluation.shape_coverage import evaluate_shape_coverage, normal_betas, prior_betas
from pose_prior.priors.file_format import PRIOR_LOADERS, load_prior
from pose_prior.priors.gan import losses as gan_losses
from pose_prior.priors.gan.networks import PoseGenerator, discriminator_param_count
from pose_prior.priors.gan.prior import GANPrior
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape import losses as shape_losses
from pose_prior.priors.shape.networks import (
    PoseShapeDiscriminator,
    PoseShapeGenerator,
    ShapeDiscriminator,
    ShapeGenerator,
    pack_pose_shape,
    poseshape_mlp_param_count,
    shape_discriminator_param_count,
    unpack_pose_shape,
)
from pose_prior.priors.shape.pair import PoseShapePair
from pose_prior.priors.shape.prior import GanBetaPrior, GanThetaBetaPrior


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _beta_prior(seed: int = 0) -> GanBetaPrior:
    torch.manual_seed(seed)
    return GanBetaPrior(ShapeGenerator(latent_dim=16, hidden=64), make_latent("S", 16))


def _theta_beta_prior(seed: int = 0) -> GanThetaBetaPrior:
    torch.manual_seed(seed)
    return GanThetaBetaPrior(PoseShapeGenerator(latent_dim=16, hidden=64), make_latent("S", 16))


def test_hmr_shape_discriminator_is_10_10_5_1() -> None:
    d = ShapeDiscriminator()
    widths = [m.out_features for m in d.mlp if isinstance(m, torch.nn.Linear)]
    assert [d.mlp[0].in_features, *widths] == [10, 10, 5, 1]
    assert _count(d) == shape_discriminator_param_count() == (10 * 10 + 10) + (10 * 5 + 5) + (5 + 1) == 171


def test_pose_shape_discriminator_has_24_outputs_and_the_arithmetic_parameter_count() -> None:
    d = PoseShapeDiscriminator()
    assert _count(d.poseshape) == poseshape_mlp_param_count() == (21 * 32 + 10 + 1) * 64 + 65 * 64 + 65
    assert _count(d) == discriminator_param_count() + 171 + poseshape_mlp_param_count()
    x = PoseShapeGenerator().sample_vector(make_latent("S", 32).sample(5))
    out = d(x)
    assert out.shape == (5, 24) and torch.isfinite(out).all()


def test_pose_shape_discriminator_pose_heads_equal_gan_s_discriminator() -> None:
    d = PoseShapeDiscriminator()
    rot, betas = PoseShapeGenerator().both(make_latent("S", 32).sample(3))
    torch.testing.assert_close(d(pack_pose_shape(rot, betas))[:, :22], d.pose(rot))
    r2, b2 = unpack_pose_shape(pack_pose_shape(rot, betas))
    assert torch.equal(r2, rot) and torch.equal(b2, betas)


def test_group_losses_equal_gan_s_losses_for_the_pose_groups() -> None:
    g = torch.Generator().manual_seed(3)
    d_real, d_fake = torch.randn(7, 22, generator=g), torch.randn(7, 22, generator=g)
    groups = [("joint", 21, 21.0), ("pose", 1, 1.0)]
    torch.testing.assert_close(shape_losses.discriminator_loss(d_real, d_fake, groups)[0],
                               gan_losses.discriminator_loss(d_real, d_fake, 21.0, 1.0)[0])
    torch.testing.assert_close(shape_losses.generator_loss(d_fake, groups)[0],
                               gan_losses.generator_loss(d_fake, 21.0, 1.0)[0])


def test_gan_beta_decodes_finite_betas_and_bodies(light_body_model) -> None:
    prior = _beta_prior()
    z = prior.sample(6, generator=torch.Generator().manual_seed(1))
    assert prior.yields == "betas" and prior.latent_type == "S"
    betas = prior.decode(z)
    assert betas.shape == (6, 10) and torch.isfinite(betas).all()
    verts = prior.vertices(z, light_body_model)
    assert verts.shape == (6, light_body_model.v_template.shape[0], 3) and torch.isfinite(verts).all()
    zero = light_body_model(torch.zeros(6, 63), betas=betas).vertices
    torch.testing.assert_close(verts, zero)


def test_gan_theta_beta_decodes_pose_and_betas(light_body_model) -> None:
    prior = _theta_beta_prior()
    z = prior.sample(4, generator=torch.Generator().manual_seed(2))
    pose, betas = prior.decode(z), prior.decode_betas(z)
    assert pose.shape == (4, 63) and betas.shape == (4, 10)
    assert prior.decode_matrices(z).shape == (4, 21, 3, 3)
    pose2, betas2 = prior.decode_both(z)
    torch.testing.assert_close(pose2, pose)
    torch.testing.assert_close(betas2, betas)
    assert torch.isfinite(pose).all() and torch.isfinite(betas).all()
    shaped = prior.body_vertices(z, light_body_model)
    torch.testing.assert_close(shaped, light_body_model(prior.decode_matrices(z), betas=betas).vertices)
    assert not torch.allclose(shaped, prior.vertices(z, light_body_model))  # vertices: neutral shape


def test_shape_kinds_are_built_in_and_round_trip(tmp_path) -> None:
    assert {"gan_beta", "gan_theta_beta"} <= set(PRIOR_LOADERS)
    for prior in (_beta_prior(4), _theta_beta_prior(5)):
        prior.save(tmp_path / f"{prior.kind}.pt", {"note": "test"})
        back = load_prior(tmp_path / f"{prior.kind}.pt")
        assert type(back) is type(prior) and back.kind == prior.kind and back.latent_dim == 16
        z = prior.sample(3, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(back.decode_betas(z), prior.decode_betas(z), rtol=0, atol=0)


def test_disentangled_pair_concatenates_two_latents(tmp_path) -> None:
    torch.manual_seed(0)
    pose = GANPrior(PoseGenerator(latent_dim=32, hidden=64), make_latent("S", 32))
    shape = _beta_prior(1)
    pose.save(tmp_path / "pose.pt")
    shape.save(tmp_path / "shape.pt")
    pair = PoseShapePair.from_files(tmp_path / "pose.pt", tmp_path / "shape.pt")
    assert pair.latent_dim == 48 and pair.latent_type == "S" and pair.constrained
    z = pair.sample(5, generator=torch.Generator().manual_seed(3))
    zp, zs = pair.split(z)
    torch.testing.assert_close(zp.norm(dim=-1), torch.ones(5))  # two spheres, not one
    torch.testing.assert_close(zs.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(pair.decode(z), pose.decode(zp))
    torch.testing.assert_close(pair.decode_betas(z), shape.decode(zs))
    path = pair.interpolate(z[0], z[1], 7)
    assert path.shape == (7, 48)
    torch.testing.assert_close(path[[0, -1]], z[:2])
    torch.testing.assert_close(pair.split(pair.project(3 * z))[1].norm(dim=-1), torch.ones(5))
    assert pair.fit_starts(3, 16, seed=0).shape == (3, 48)


def _brute_force_float64(gen: torch.Tensor, ref: torch.Tensor, body_model) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall (R,) and precision (G,) in mm by an explicit float64 loop over every pair (Eq. 5)."""
    vg = body_model(gen.new_zeros(len(gen), 63), betas=gen).vertices.double()
    vr = body_model(ref.new_zeros(len(ref), 63), betas=ref).vertices.double()
    d = torch.empty(len(ref), len(gen), dtype=torch.float64)
    for i in range(len(ref)):
        for j in range(len(gen)):
            d[i, j] = (vr[i] - vg[j]).norm(dim=-1).mean()
    return d.min(1).values * 1000, d.min(0).values * 1000


def test_shape_coverage_equals_a_float64_brute_force_loop(light_body_model, light_body_model_f64) -> None:
    gen = normal_betas(23, seed=1)
    ref = normal_betas(9, seed=2) * 0.5
    recall, precision = _brute_force_float64(gen, ref, light_body_model)
    for method in ("bounds", "brute"):
        result = evaluate_shape_coverage(gen, ref, light_body_model, chunk=5, method=method)
        torch.testing.assert_close(result.recall.distance_mm, recall, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(result.precision.distance_mm, precision, rtol=1e-5, atol=1e-4)
        assert result.summary()["num_generated"] == 23 and result.summary()["num_references"] == 9
        assert 0 <= int(result.recall.index.min()) and int(result.recall.index.max()) < 23
        # all float64 (bodies too): "brute" is the loop to rounding; "bounds" may return a neighbour within
        # its relative tolerance (1e-5, the pose coverage's exact search) of the nearest
        exact = evaluate_shape_coverage(gen.double(), ref.double(), light_body_model_f64, chunk=5,
                                        dtype=torch.float64, method=method)
        recall64, precision64 = _brute_force_float64(gen.double(), ref.double(), light_body_model_f64)
        tol = 1e-10 if method == "brute" else 1e-5
        torch.testing.assert_close(exact.recall.distance_mm, recall64, rtol=tol, atol=1e-9)
        torch.testing.assert_close(exact.precision.distance_mm, precision64, rtol=tol, atol=1e-9)


def test_prior_betas_are_seeded() -> None:
    prior = _beta_prior()
    torch.testing.assert_close(prior_betas(prior, 10, seed=4), prior_betas(prior, 10, seed=4), rtol=0, atol=0)
    assert prior_betas(prior, 10, seed=4).shape == (10, 10)


def test_posed_shape_coverage_equals_a_float64_brute_force_loop(light_body_model_f64) -> None:
    """Bodies posed AND shaped (GAN-theta-beta, the pair): Eq. 5 over every pair by an explicit loop."""
    g = torch.Generator().manual_seed(5)
    gen_b, ref_b = normal_betas(11, seed=3).double(), normal_betas(7, seed=4).double()
    gen_p = (0.3 * torch.randn(11, 63, generator=g)).double()
    ref_p = (0.3 * torch.randn(7, 63, generator=g)).double()
    vg = light_body_model_f64(gen_p, betas=gen_b).vertices
    vr = light_body_model_f64(ref_p, betas=ref_b).vertices
    d = torch.empty(7, 11, dtype=torch.float64)
    for i in range(7):
        for j in range(11):
            d[i, j] = (vr[i] - vg[j]).norm(dim=-1).mean()
    for method in ("bounds", "brute"):
        result = evaluate_shape_coverage(gen_b, ref_b, light_body_model_f64, chunk=4, dtype=torch.float64,
                                         method=method, generated_poses=gen_p, reference_poses=ref_p)
        tol = 1e-10 if method == "brute" else 1e-5
        torch.testing.assert_close(result.recall.distance_mm, d.min(1).values * 1000, rtol=tol, atol=1e-9)
        torch.testing.assert_close(result.precision.distance_mm, d.min(0).values * 1000, rtol=tol, atol=1e-9)
    # the zero pose is not what was measured: posing changes the distances
    zero = evaluate_shape_coverage(gen_b, ref_b, light_body_model_f64, dtype=torch.float64, method="brute")
    assert not torch.allclose(zero.recall.distance_mm, d.min(1).values * 1000)
