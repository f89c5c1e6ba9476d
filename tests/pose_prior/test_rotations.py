"""Rotation conversions against closed forms (Rodrigues in float64), near 0 and near pi."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pose_prior import rotations as R


def rodrigues64(aa: np.ndarray) -> np.ndarray:
    """Independent float64 Rodrigues formula, one vector at a time."""
    out = []
    for v in aa.reshape(-1, 3):
        theta = np.linalg.norm(v)
        if theta < 1e-12:
            out.append(np.eye(3))
            continue
        k = v / theta
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        out.append(np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K)
    return np.stack(out)


def _axis_angles(n: int, angles: torch.Tensor) -> torch.Tensor:
    axis = torch.nn.functional.normalize(torch.randn(n, 3, dtype=torch.float64), dim=-1)
    return axis * angles[:, None]


@pytest.mark.parametrize(
    "angles",
    [
        torch.rand(200, dtype=torch.float64) * math.pi,
        torch.full((50,), 1e-7, dtype=torch.float64),
        math.pi - torch.rand(50, dtype=torch.float64) * 1e-6,
        torch.zeros(5, dtype=torch.float64),
    ],
    ids=["generic", "near-0", "near-pi", "zero"],
)
def test_axis_angle_matrix_against_rodrigues_and_roundtrip(angles: torch.Tensor) -> None:
    aa = _axis_angles(len(angles), angles)
    mats = R.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(mats.numpy(), rodrigues64(aa.numpy()), atol=1e-10)
    back = R.axis_angle_to_matrix(R.matrix_to_axis_angle(mats))
    np.testing.assert_allclose(back.numpy(), mats.numpy(), atol=1e-8)


def test_matrix_to_axis_angle_angle_range_and_near_pi_axis() -> None:
    aa = _axis_angles(100, math.pi - torch.rand(100, dtype=torch.float64) * 1e-5)
    rec = R.matrix_to_axis_angle(R.axis_angle_to_matrix(aa))
    assert torch.all(rec.norm(dim=-1) <= math.pi + 1e-9)
    # near pi, axis-angle is defined up to the sign of the axis
    cos = torch.nn.functional.cosine_similarity(rec, aa, dim=-1).abs()
    assert torch.all(cos > 1 - 1e-6)


def test_sixd_is_first_two_columns_and_gram_schmidt_matches_closed_form() -> None:
    mats = R.axis_angle_to_matrix(_axis_angles(64, torch.rand(64, dtype=torch.float64) * math.pi))
    d6 = R.matrix_to_sixd(mats)
    np.testing.assert_allclose(d6.reshape(-1, 3, 2).numpy(), mats[..., :2].numpy())
    np.testing.assert_allclose(R.sixd_to_matrix(d6).numpy(), mats.numpy(), atol=1e-12)
    # arbitrary 6D input: independent Gram-Schmidt
    raw = torch.randn(32, 6, dtype=torch.float64)
    a = raw.reshape(-1, 3, 2).numpy()
    b1 = a[:, :, 0] / np.linalg.norm(a[:, :, 0], axis=1, keepdims=True)
    a2 = a[:, :, 1] - (b1 * a[:, :, 1]).sum(1, keepdims=True) * b1
    b2 = a2 / np.linalg.norm(a2, axis=1, keepdims=True)
    expected = np.stack([b1, b2, np.cross(b1, b2)], axis=-1)
    np.testing.assert_allclose(R.sixd_to_matrix(raw).numpy(), expected, atol=1e-12)


def test_gradients_finite_at_zero_and_pi() -> None:
    aa = torch.tensor([[0.0, 0.0, 0.0], [math.pi, 0.0, 0.0], [0.0, 1e-8, 0.0]], requires_grad=True)
    R.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_body_pose_helpers_roundtrip() -> None:
    pose = torch.randn(4, 63) * 0.5
    np.testing.assert_allclose(R.matrices_to_body_pose(R.body_pose_to_matrices(pose)).numpy(), pose.numpy(), atol=1e-5)


def test_sixd_to_matrix_values_and_gradients_equal_roma() -> None:
    """The rewritten Gram-Schmidt is roma's mathematics: same values and gradients in float64."""
    import roma

    raw = torch.randn(4, 21, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 21, 3, 3, dtype=torch.float64)
    ours = R.sixd_to_matrix(raw)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), raw)
    ref = roma.special_gramschmidt(raw.reshape(4, 21, 3, 2))
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), raw)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-10, rtol=0)
