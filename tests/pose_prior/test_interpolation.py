"""Eq. 6 statistics of hand-made sequences against hand arithmetic."""

from __future__ import annotations

import torch

from pose_prior.interpolation import interpolation_stats


def _translated_sequence(offsets: list[float], V: int = 5) -> torch.Tensor:
    """A rigid body translated along x to the given offsets (metres): D between two = |dx|."""
    base = torch.randn(V, 3, dtype=torch.float64)
    return torch.stack([base + torch.tensor([o, 0.0, 0.0], dtype=torch.float64) for o in offsets])


def test_ratio_and_normalised_curve_by_hand() -> None:
    # steps 0.001, 0.002, 0.003 m (1, 2, 3 mm): endpoint 6 mm over 3 steps -> straight step 2 mm
    seq = _translated_sequence([0.0, 0.001, 0.003, 0.006])[None]
    stats = interpolation_stats(seq)
    torch.testing.assert_close(stats.steps_mm[0], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(stats.ratio, torch.tensor([3.0], dtype=torch.float64))
    torch.testing.assert_close(stats.normalised[0], torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(stats.endpoint_mm, torch.tensor([6.0], dtype=torch.float64))


def test_detour_gives_normalised_steps_above_one_and_summary() -> None:
    even = _translated_sequence([0.0, 0.002, 0.004])  # ratio 1, straight
    detour = _translated_sequence([0.0, 0.004, 0.002])  # goes 4 mm out, 2 mm back: endpoint 2 mm
    stats = interpolation_stats(torch.stack([even, detour]))
    torch.testing.assert_close(stats.ratio, torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(stats.normalised[1], torch.tensor([4.0, 2.0], dtype=torch.float64))
    s = stats.summary()
    assert s["ratio_mean"] == 1.5 and s["ratio_median"] in (1.0, 2.0) and s["pairs"] == 2 and s["steps"] == 2
    assert abs(s["ratio_std"] - 0.5) < 1e-12
    torch.testing.assert_close(stats.mean_curve(), torch.tensor([2.5, 1.5], dtype=torch.float64))
