"""Eq. 6 statistics of hand-made sequences against hand arithmetic; the statistics against numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pose_prior.evaluation.interpolation import interpolation_stats
from pose_prior.evaluation.statistics import summary_statistics
from pose_prior.io import atomic_write_json


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
    assert s["ratio_mean"] == 1.5 and s["ratio_median"] == 1.5 and s["pairs"] == 2 and s["steps"] == 2
    assert abs(s["ratio_std"] - 0.5) < 1e-12 and abs(s["ratio_variance"] - 0.25) < 1e-12
    torch.testing.assert_close(stats.mean_curve(), torch.tensor([2.5, 1.5], dtype=torch.float64))


def test_statistics_are_numpy_mean_variance_and_true_median() -> None:
    for n in (1, 2, 6, 7):
        x = np.random.default_rng(n).lognormal(size=n)
        s = summary_statistics(torch.from_numpy(x), prefix="r_")
        assert s["r_mean"] == np.mean(x) and s["r_median"] == np.median(x) and s["r_count"] == n
        assert s["r_variance"] == np.var(x) and s["r_std"] == np.std(x)
    six = torch.tensor([1.2, 0.9, 3.0, 1.494, 1.94, 2.5], dtype=torch.float64)
    assert summary_statistics(six)["median"] == (1.494 + 1.94) / 2 != float(six.median())  # torch: lower middle


def test_degenerate_and_badly_inverted_pairs_are_excluded_and_counted(tmp_path) -> None:
    good = _translated_sequence([0.0, 0.002, 0.003, 0.005])  # steps 2, 1, 2 mm: ratio 2
    one_body = _translated_sequence([0.0, 0.0, 0.0, 0.0])  # both endpoints decode to one body: 0 / 0
    bad_inversion = _translated_sequence([0.0, 0.001, 0.004, 0.006])  # ratio 3, but an endpoint 80 mm off
    inversion = torch.tensor([[1.0, 2.0], [0.5, 0.5], [80.0, 3.0]], dtype=torch.float64)
    stats = interpolation_stats(torch.stack([good, one_body, bad_inversion]), inversion, max_inversion_mm=50.0)
    assert stats.valid.tolist() == [True, False, False]
    s = stats.summary()
    assert (s["pairs"], s["pairs_valid"], s["excluded_degenerate"], s["excluded_inversion"]) == (3, 1, 1, 1)
    assert s["ratio_mean"] == s["ratio_median"] == pytest.approx(2.0, rel=1e-12) and s["ratio_count"] == 1
    assert s["inversion_median_mm"] == np.median(inversion.numpy())
    torch.testing.assert_close(stats.mean_curve(), torch.tensor([1.2, 0.6, 1.2], dtype=torch.float64))
    # nothing valid: no NaN reaches a results file, which a strict parser reads back
    none_valid = interpolation_stats(one_body[None])
    assert none_valid.summary()["ratio_mean"] is None and torch.isnan(none_valid.mean_curve()).all()
    atomic_write_json(tmp_path / "r.json", {**none_valid.summary(), "curve": none_valid.mean_curve()})
    text = (tmp_path / "r.json").read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    record = json.loads(text, parse_constant=refuse)
    assert record["curve"] == [None, None, None] and record["pairs_valid"] == 0
