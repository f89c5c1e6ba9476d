"""Camera: projection formula, exact translation recovery, similar-triangles depth, GMoF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_prior.fitting.camera import (
    SPIN24_TORSO_EDGES,
    depth_from_torso,
    estimate_translation,
    gmof,
    init_translation_similar_triangles,
    perspective_project,
)


def estimate_translation_loop(S, uv, conf, f, c):
    """SPIN's estimate_translation_np for one frame, written from its equations (numpy, float64)."""
    rows, rhs = [], []
    for j in range(S.shape[0]):
        w = np.sqrt(conf[j])
        rows.append(w * np.array([f, 0.0, c[0] - uv[j, 0]]))
        rhs.append(w * ((uv[j, 0] - c[0]) * S[j, 2] - f * S[j, 0]))
        rows.append(w * np.array([0.0, f, c[1] - uv[j, 1]]))
        rhs.append(w * ((uv[j, 1] - c[1]) * S[j, 2] - f * S[j, 1]))
    return np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]


def test_projection_formula_per_point():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(3, 7, 3)) * 0.5
    t = np.array([[0.1, -0.2, 10.0], [0.0, 0.0, 20.0], [-0.3, 0.2, 8.0]])
    c = np.array([[112.0, 112.0], [500.0, 501.0], [0.0, 0.0]])
    uv = perspective_project(torch.from_numpy(P), torch.from_numpy(t), 5000.0, torch.from_numpy(c)).numpy()
    for b in range(3):
        for n in range(7):
            X, Y, Z = P[b, n] + t[b]
            np.testing.assert_allclose(uv[b, n], [5000 * X / Z + c[b, 0], 5000 * Y / Z + c[b, 1]], rtol=1e-12)
    # a (2,) centre with a batch of 2 broadcasts as (cx, cy), not per sample
    uv2 = perspective_project(torch.from_numpy(P[:2]), torch.from_numpy(t[:2]), 5000.0, (10.0, 20.0)).numpy()
    np.testing.assert_allclose(uv2[1, 0], [5000 * (P[1, 0, 0] + t[1, 0]) / (P[1, 0, 2] + t[1, 2]) + 10.0,
                                           5000 * (P[1, 0, 1] + t[1, 1]) / (P[1, 0, 2] + t[1, 2]) + 20.0])


def test_estimate_translation_recovers_exact_translation_noise_free():
    rng = np.random.default_rng(1)
    B, N = 8, 24
    joints = torch.from_numpy(rng.normal(size=(B, N, 3)) * 0.4)
    t_true = torch.from_numpy(np.c_[rng.normal(size=(B, 2)) * 0.2, rng.uniform(5, 60, size=B)])
    center = torch.from_numpy(rng.uniform(100, 600, size=(B, 2)))
    uv = perspective_project(joints, t_true, 5000.0, center)
    conf = torch.from_numpy(rng.uniform(0.2, 1.0, size=(B, N, 1)))
    conf[:, :5] = 0  # missing joints are ignored
    uv_bad = uv.clone()
    uv_bad[:, :5] += 1e3
    t_est = estimate_translation(joints, torch.cat([uv_bad, conf], -1), 5000.0, center)
    assert (t_est - t_true).abs().max() < 1e-8


def test_estimate_translation_matches_loop_with_noise():
    rng = np.random.default_rng(2)
    S = rng.normal(size=(24, 3)) * 0.4
    uv = rng.normal(size=(24, 2)) * 30 + 112
    conf = rng.uniform(0, 1, size=24)
    ours = estimate_translation(torch.from_numpy(S[None]), torch.from_numpy(np.c_[uv, conf][None]),
                                5000.0, (112.0, 112.0))[0].numpy()
    np.testing.assert_allclose(ours, estimate_translation_loop(S, uv, conf, 5000.0, (112.0, 112.0)), rtol=1e-8)


def test_similar_triangles_depth_exact_for_fronto_parallel_torso():
    # torso in a plane parallel to the image: 2D lengths = f * 3D lengths / depth
    B = 4
    joints = torch.zeros(B, 24, 3, dtype=torch.float64)
    joints[:, 9] = torch.tensor([0.2, -0.5, 0.0])  # left shoulder
    joints[:, 3] = torch.tensor([0.1, 0.0, 0.0])  # left hip
    joints[:, 8] = torch.tensor([-0.2, -0.5, 0.0])
    joints[:, 2] = torch.tensor([-0.1, 0.0, 0.0])
    tz = torch.tensor([5.0, 10.0, 20.0, 40.0], dtype=torch.float64)
    t = torch.stack([torch.zeros(B), torch.zeros(B), tz], -1).double()
    uv = perspective_project(joints, t, 5000.0, (500.0, 500.0))
    kp = torch.cat([uv, torch.ones(B, 24, 1, dtype=torch.float64)], -1)
    est = depth_from_torso(joints, kp, 5000.0, SPIN24_TORSO_EDGES)
    assert torch.allclose(est, tz, rtol=1e-12)
    init = init_translation_similar_triangles(joints, kp, 5000.0, SPIN24_TORSO_EDGES)
    assert torch.equal(init[:, :2], torch.zeros(B, 2, dtype=torch.float64)) and torch.allclose(init[:, 2], tz)
    # an edge with an invisible endpoint is dropped; no visible edge -> default depth
    kp[1, 9, 2] = 0
    kp[1, 9, :2] = 0  # garbage position for the invisible joint
    assert torch.allclose(depth_from_torso(joints, kp, 5000.0, SPIN24_TORSO_EDGES)[1], tz[1])
    kp[2, [8, 9], 2] = 0
    assert depth_from_torso(joints, kp, 5000.0, SPIN24_TORSO_EDGES, default_depth=7.0)[2] == 7.0


def test_gmof_closed_form():
    r = torch.tensor([0.0, 1.0, 100.0, -100.0, 1e6])
    rho = gmof(r, sigma=100.0)
    assert rho[0] == 0
    assert torch.allclose(rho[2], torch.tensor(5000.0)) and rho[2] == rho[3]
    assert abs(float(rho[1]) - 1e4 / (1e4 + 1)) < 1e-6
    assert float(rho[4]) == pytest.approx(1e4, rel=1e-6)  # saturates at sigma^2
