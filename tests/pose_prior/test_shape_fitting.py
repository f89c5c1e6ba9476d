"""Keypoint fitting with a shape prior (GAN-theta-beta, GAN-S + GAN-beta pair): the sparse keypoint body with
betas, the latent on the sphere at every evaluation, recovery of a body the prior generated."""

from __future__ import annotations

import math

import pytest
import torch

from pose_prior.body_model.keypoints import keypoint_map_for_body_model
from pose_prior.fitting.camera import perspective_project
from pose_prior.fitting.keypoint_fit import FitSettings, KeypointBody, fit_keypoints, fitted_vertices
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.gan.prior import GANPrior
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape.networks import PoseShapeGenerator, ShapeGenerator
from pose_prior.priors.shape.pair import PoseShapePair
from pose_prior.priors.shape.prior import GanBetaPrior, GanThetaBetaPrior
from pose_prior.rotations import axis_angle_to_matrix, body_pose_to_matrices, matrix_to_axis_angle

FOCAL = 1000.0
CENTER = (112.0, 112.0)
IDENTITY_6D = torch.tensor([1.0, 0, 0, 1, 0, 0])


def _tame_pose_head(gen: PoseGenerator, scale: float) -> None:
    """Moderate random poses: the 6D output bias is the identity rotation, the weights scaled."""
    with torch.no_grad():
        gen.bodyprior_dec_out.weight.mul_(scale)
        gen.bodyprior_dec_out.bias.copy_(IDENTITY_6D.repeat(gen.num_joints))


def theta_beta_prior(dtype: torch.dtype = torch.float64) -> GanThetaBetaPrior:
    torch.manual_seed(3)
    gen = PoseShapeGenerator(latent_dim=16, hidden=64)
    _tame_pose_head(gen, 3.0)
    with torch.no_grad():
        gen.shape_out.weight.mul_(8.0)  # betas of a few units
    return GanThetaBetaPrior(gen, make_latent("S", 16)).to(dtype)


def pair_prior(dtype: torch.dtype = torch.float64) -> PoseShapePair:
    torch.manual_seed(4)
    pose_gen = PoseGenerator(latent_dim=16, hidden=64)
    _tame_pose_head(pose_gen, 3.0)
    shape_gen = ShapeGenerator(latent_dim=8, hidden=32)
    with torch.no_grad():
        shape_gen.out.weight.mul_(8.0)
    return PoseShapePair(GANPrior(pose_gen, make_latent("S", 16)).to(dtype),
                         GanBetaPrior(shape_gen, make_latent("S", 8)).to(dtype))


def upright(B: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(B, generator=g, dtype=torch.float64) - 0.5) * math.radians(60)
    aa = torch.zeros(B, 3, dtype=torch.float64)
    aa[:, 1] = yaw
    x_pi = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    return matrix_to_axis_angle(axis_angle_to_matrix(aa) @ x_pi)


def generated_problem(prior, body_model, B: int, seed: int, layout: str = "spin49", depth: float = 4.0):
    """Keypoints (B, K, 3) of bodies the prior generates (pose AND betas) from known latents."""
    z = prior.sample(B, generator=torch.Generator().manual_seed(seed))
    pose, betas = prior.decode_both(z)
    orient = upright(B, seed)
    transl = torch.stack([torch.zeros(B), torch.full((B,), 0.1), torch.full((B,), depth)], -1).to(pose)
    kb = KeypointBody(body_model, keypoint_map_for_body_model(body_model, layout))
    pts = kb(axis_angle_to_matrix(orient), body_pose_to_matrices(pose), transl, betas)
    uv = perspective_project(pts, torch.zeros_like(transl), FOCAL, CENTER)
    kp = torch.cat([uv, kb.available[None, :, None].expand(B, -1, 1).to(uv)], -1)
    return kp, z, pose, betas, orient, transl, pts, kb


def test_keypoint_body_with_betas_equals_the_full_forward(light_body_model_f64) -> None:
    bm = light_body_model_f64
    kmap = keypoint_map_for_body_model(bm, "spin49")
    kb = KeypointBody(bm, kmap)
    g = torch.Generator().manual_seed(1)
    pose = torch.randn(5, 63, generator=g, dtype=torch.float64) * 0.4
    go = torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.randn(5, 3, generator=g, dtype=torch.float64)
    avail = kmap.available
    for k in (bm.num_betas, 4):  # all shape components, and the first few
        betas = torch.randn(5, k, generator=g, dtype=torch.float64) * 2.0
        out = bm(pose, betas=betas, global_orient=go, transl=t)
        ref = kmap(out.vertices, out.joints)  # full skinning of the shaped mesh
        got = kb(axis_angle_to_matrix(go), body_pose_to_matrices(pose), t, betas)
        assert torch.allclose(got[:, avail], ref[:, avail], atol=1e-12)
    # the betas move the keypoints (the test above is not passing on the neutral shape)
    neutral = kb(axis_angle_to_matrix(go), body_pose_to_matrices(pose), t)
    assert (got[:, avail] - neutral[:, avail]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="betas must be"):
        kb(axis_angle_to_matrix(go), body_pose_to_matrices(pose), t, torch.zeros(5, bm.num_betas + 1))


@pytest.mark.parametrize("make", [theta_beta_prior, pair_prior], ids=["theta_beta", "pair"])
def test_shape_prior_latent_stays_on_the_sphere_at_every_evaluation(make, light_body_model,
                                                                    light_body_model_f64) -> None:
    kp, *_ = generated_problem(make(), light_body_model_f64, B=3, seed=5, layout="spin24", depth=45.0)
    prior = make(torch.float32)  # the same seeded weights
    seen: list[tuple[str, torch.Tensor]] = []
    res = fit_keypoints(prior, light_body_model, kp.float(), "spin24", CENTER,
                        FitSettings(body_iters=15, camera_iters=5),
                        monitor=lambda stage, z: seen.append((stage, z.detach().double())))
    assert {stage for stage, _ in seen} == {"camera", "body"}
    assert sum(z.shape[0] for stage, z in seen if stage == "body") > 15 * 3
    for _, z in seen:
        zs = prior.split(z) if isinstance(prior, PoseShapePair) else (z,)
        for part in zs:  # each spherical part is on its own unit sphere
            assert (part.norm(dim=-1) - 1).abs().max() < 1e-5
    # the result carries the prior's betas of the winning latent, and the fitted mesh is shaped by them
    assert res.betas.shape == (3, 10)
    torch.testing.assert_close(res.betas, prior.decode_betas(res.latent).to(res.betas))
    verts = fitted_vertices(light_body_model, res)
    ref = light_body_model(res.body_pose, betas=res.betas, global_orient=res.global_orient).vertices
    torch.testing.assert_close(verts, ref.reshape(verts.shape))
    neutral = light_body_model(res.body_pose, global_orient=res.global_orient).vertices.reshape(verts.shape)
    assert (verts - neutral).abs().max() > 1e-3


def test_pose_prior_fit_has_zero_betas(light_body_model, light_body_model_f64) -> None:
    torch.manual_seed(0)
    gen = PoseGenerator(latent_dim=16, hidden=64)
    _tame_pose_head(gen, 3.0)
    prior = GANPrior(gen, make_latent("S", 16))
    kp, *_ = generated_problem(pair_prior(), light_body_model_f64, B=2, seed=1, layout="spin24", depth=45.0)
    res = fit_keypoints(prior, light_body_model, kp.float(), "spin24", CENTER, FitSettings(body_iters=3, camera_iters=2))
    assert res.betas.shape == (2, light_body_model.num_betas) and not res.betas.any()


@pytest.mark.parametrize("make", [theta_beta_prior, pair_prior], ids=["theta_beta", "pair"])
def test_fit_recovers_a_body_the_shape_prior_generated(make, light_body_model_f64) -> None:
    bm = light_body_model_f64
    prior = make()
    kp, z, pose, betas, orient, transl, pts, kb = generated_problem(prior, bm, B=3, seed=11)
    g = torch.Generator().manual_seed(2)
    z0 = prior.project(z + 0.15 * torch.randn(z.shape, generator=g, dtype=z.dtype))  # a start near the truth
    settings = FitSettings(focal=FOCAL, body_iters=300, camera_iters=10, flip=False, ignore_keypoints=())
    res = fit_keypoints(prior, bm, kp, "spin49", CENTER, settings, init_latent=z0,
                        init_global_orient=orient + 0.03, init_transl=transl + torch.tensor([0.02, -0.02, 0.1]).to(transl))
    def pixels(go, pose_, t, b):  # (B, K_available, 2) projected keypoints
        p3 = kb(axis_angle_to_matrix(go), body_pose_to_matrices(pose_), t, b)
        return perspective_project(p3, torch.zeros_like(t), FOCAL, CENTER)[:, kb.available]

    target = kp[:, kb.available, :2]
    start_px = (pixels(orient, prior.decode(z0), transl, prior.decode_betas(z0)) - target).norm(dim=-1).mean(-1)
    fit_px = (pixels(res.global_orient, res.body_pose, res.transl, res.betas) - target).norm(dim=-1).mean(-1)
    assert (fit_px < 0.5).all(), fit_px  # mean keypoint error in pixels (a 1000-px focal at 4 m)
    assert (start_px > 10 * fit_px).all(), (start_px, fit_px)  # the fit did the work, not the start
    # in 3D, up to the depth / body-size ambiguity of one view: within a few cm of the generated body
    fit3 = kb(axis_angle_to_matrix(res.global_orient), body_pose_to_matrices(res.body_pose), res.transl, res.betas)
    err_mm = (fit3 - pts).norm(dim=-1)[:, kb.available].mean(-1) * 1000.0
    assert (err_mm < 40.0).all(), err_mm
