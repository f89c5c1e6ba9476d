"""Procrustes / MPJPE / P-MPJPE against an independent per-frame numpy implementation; H3.6M P2 helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pose_prior.body_model.keypoints import H36M17_TO_SPIN24, H36M_TO_J14, J24_TO_J14
from pose_prior.evaluation.metrics3d import h36m_p2_errors, mpjpe, p_mpjpe, similarity_align


def procrustes_np(S1: np.ndarray, S2: np.ndarray) -> np.ndarray:
    """The 6 steps of docs/protocols.md#procrustes-alignment for one frame, (J, 3) arrays, float64."""
    S1, S2 = S1.T.astype(np.float64), S2.T.astype(np.float64)
    mu1 = S1.mean(axis=1, keepdims=True)
    mu2 = S2.mean(axis=1, keepdims=True)
    X1, X2 = S1 - mu1, S2 - mu2
    var1 = np.sum(X1**2)
    K = X1.dot(X2.T)
    U, s, Vh = np.linalg.svd(K)
    V = Vh.T
    Z = np.eye(U.shape[0])
    Z[-1, -1] *= np.sign(np.linalg.det(U.dot(V.T)))
    R = V.dot(Z.dot(U.T))
    scale = np.trace(R.dot(K)) / var1
    t = mu2 - scale * (R.dot(mu1))
    return (scale * R.dot(S1) + t).T


def _frames(rng: np.random.Generator, B: int = 20, J: int = 14) -> tuple[np.ndarray, np.ndarray]:
    pred = rng.normal(size=(B, J, 3))
    gt = rng.normal(size=(B, J, 3))
    gt[0] = pred[0] * np.array([-1.0, 1.0, 1.0])  # mirrored: best proper rotation is not the mirror
    gt[1] = pred[1][:, [1, 0, 2]]  # axis swap = reflection
    pred[2] = rng.normal(size=(J, 3)) * np.array([1.0, 1.0, 1e-6])  # nearly planar prediction
    pred[3] = np.outer(np.linspace(-1, 1, J), [1.0, 2.0, 0.5]) + 1e-7 * rng.normal(size=(J, 3))  # near-collinear
    return pred, gt


def test_similarity_align_matches_independent_numpy():
    rng = np.random.default_rng(0)
    pred, gt = _frames(rng)
    ours = similarity_align(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    for b in range(pred.shape[0]):
        ref = procrustes_np(pred[b], gt[b])
        np.testing.assert_allclose(ours[b], ref, atol=1e-9, rtol=0)
        err_ref = np.linalg.norm(ref - gt[b], axis=-1).mean()
        assert abs(float(p_mpjpe(torch.from_numpy(pred[b : b + 1]), torch.from_numpy(gt[b : b + 1]))[0]) - err_ref) < 1e-12


def test_mirrored_ground_truth_is_not_matched_by_a_reflection():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(1, 14, 3))
    gt = pred * np.array([-1.0, 1.0, 1.0])
    err = float(p_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt))[0])
    assert err > 1e-2  # a reflection would give 0; the fix forbids it
    aligned = similarity_align(torch.from_numpy(pred), torch.from_numpy(gt))[0].numpy()
    X = aligned - aligned.mean(0)
    P = pred[0] - pred[0].mean(0)
    # the applied linear map is scale * proper rotation: det > 0
    M, *_ = np.linalg.lstsq(P, X, rcond=None)
    assert np.linalg.det(M) > 0


def test_known_similarity_gives_zero_error_and_mpjpe_values():
    rng = np.random.default_rng(2)
    pred = rng.normal(size=(5, 14, 3))
    R = Rotation.random(5, random_state=3).as_matrix()
    s = rng.uniform(0.5, 2.0, size=(5, 1, 1))
    t = rng.normal(size=(5, 1, 3))
    gt = s * np.einsum("bij,bkj->bki", R, pred) + t
    err = p_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt))
    assert err.abs().max() < 1e-10
    m = mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    np.testing.assert_allclose(m, np.linalg.norm(pred - gt, axis=-1).mean(-1), rtol=1e-12)
    # float32 input: computed in float64 inside, still exact
    err32 = p_mpjpe(torch.from_numpy(pred).float(), torch.from_numpy(gt).float())
    assert err32.abs().max() < 1e-5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"\(B, J, 3\)"):
        p_mpjpe(torch.zeros(2, 14, 3), torch.zeros(2, 13, 3))


def test_h36m_p2_errors_against_loop_in_numpy():
    rng = np.random.default_rng(4)
    B, V = 6, 50
    verts = rng.normal(size=(B, V, 3)) * 0.3
    reg = np.asfortranarray(rng.dirichlet(np.ones(V), size=17))  # (17, V) rows sum to 1, Fortran like the file
    # GT in SPIN-24 with 7 zero rows, pelvis-centred, metres
    S17 = rng.normal(size=(B, 17, 3)) * 0.3
    S17 -= S17[:, :1]
    S = np.zeros((B, 24, 4))
    S[:, list(H36M17_TO_SPIN24), :3] = S17
    S[:, list(H36M17_TO_SPIN24), 3] = 1.0
    m, pm = h36m_p2_errors(torch.from_numpy(verts).float(), torch.from_numpy(S), torch.from_numpy(reg))
    for b in range(B):
        j17 = reg @ verts[b].astype(np.float32).astype(np.float64)
        pred14 = j17[list(H36M_TO_J14)] - j17[0]
        gt14 = S[b, list(J24_TO_J14), :3]
        np.testing.assert_allclose(float(m[b]), 1000 * np.linalg.norm(pred14 - gt14, axis=-1).mean(), rtol=1e-9)
        ref = procrustes_np(pred14, gt14)
        np.testing.assert_allclose(float(pm[b]), 1000 * np.linalg.norm(ref - gt14, axis=-1).mean(), rtol=1e-9)
    # J24_TO_J14 picks exactly the 17-joints H36M_TO_J14 (the 14th is "Head (H36M)", GT-24 index 18)
    np.testing.assert_array_equal(S[:, list(J24_TO_J14), :3], S17[:, list(H36M_TO_J14)])


def test_h36m_p2_perfect_prediction_is_zero():
    rng = np.random.default_rng(5)
    V = 40
    verts = rng.normal(size=(3, V, 3))
    reg = rng.dirichlet(np.ones(V), size=17)
    j17 = np.einsum("jv,bvc->bjc", reg, verts)
    S = np.zeros((3, 24, 4))
    S[:, list(H36M17_TO_SPIN24), :3] = j17 - j17[:, :1]
    S[:, list(H36M17_TO_SPIN24), 3] = 1
    m, pm = h36m_p2_errors(torch.from_numpy(verts), torch.from_numpy(S), torch.from_numpy(reg))
    assert m.abs().max() < 1e-9 and pm.abs().max() < 1e-6
    with pytest.raises(ValueError, match="J_regressor_h36m"):
        h36m_p2_errors(torch.from_numpy(verts), torch.from_numpy(S), torch.from_numpy(reg[:, :-1]))
