"""Eq. 5 mesh distance against a float64 loop (all-pairs distances: tests/pose_prior/test_nearest.py)."""

from __future__ import annotations

import pytest
import torch

from pose_prior.evaluation.distance import mesh_distance


def _loop(v1: torch.Tensor, v2: torch.Tensor) -> float:
    total = 0.0
    for a, b in zip(v1.tolist(), v2.tolist()):
        total += sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
    return total / len(v1)


def test_mesh_distance_matches_float64_loop() -> None:
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.randn(4, 50, 3, generator=g), torch.randn(4, 50, 3, generator=g)
    d = mesh_distance(v1, v2)
    assert d.shape == (4,)
    ref = torch.tensor([_loop(v1[i].double(), v2[i].double()) for i in range(4)])
    torch.testing.assert_close(d.double(), ref.double(), atol=1e-6, rtol=0)
    # not the flattened L2 distance
    assert not torch.allclose(d, (v1 - v2).flatten(1).norm(dim=1) / 50)


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        mesh_distance(torch.zeros(2, 5, 3), torch.zeros(2, 4, 3))
