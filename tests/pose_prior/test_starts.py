"""Start pools: per-row selection against a plain loop, chunking, ties, and priors that cannot sample."""

from __future__ import annotations

import pytest
import torch

from pose_prior.fitting.starts import draw_pool, select_starts
from pose_prior.priors.none import NoPrior


def _setup(N: int = 7, M: int = 11, D: int = 4):
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(N, D, generator=g, dtype=torch.float64)
    pool = torch.randn(M, D, generator=g, dtype=torch.float64)
    target = torch.randn(N, D, generator=g, dtype=torch.float64)

    def score(cand, rows):
        z = z0[rows] if cand is None else pool[cand]
        return (z - target[rows]).square().sum(-1)

    return z0, pool, target, score


@pytest.mark.parametrize("chunk_rows", [1, 3, 16384])
def test_each_row_gets_its_nearest_candidate_whatever_the_chunking(chunk_rows: int) -> None:
    z0, pool, target, score = _setup()
    got = select_starts(z0, pool, score, chunk_rows=chunk_rows)
    for n in range(z0.shape[0]):
        candidates = [z0[n]] + list(pool)
        dists = [float((c - target[n]).square().sum()) for c in candidates]
        best = min(range(len(dists)), key=lambda i: (dists[i], i))
        assert torch.equal(got[n], candidates[best])


@pytest.mark.parametrize("chunk_rows", [2, 16384])
def test_a_row_of_rank_r_gets_its_r_th_nearest_candidate(chunk_rows: int) -> None:
    z0, pool, target, score = _setup()
    rank = torch.tensor([0, 1, 2, 0, 3, 11, 30])  # 30: past the last candidate, clamped to the worst
    got = select_starts(z0, pool, score, rank, chunk_rows=chunk_rows)
    for n in range(z0.shape[0]):
        candidates = [z0[n]] + list(pool)
        dists = [float((c - target[n]).square().sum()) for c in candidates]
        order = sorted(range(len(dists)), key=lambda i: (dists[i], i))
        assert torch.equal(got[n], candidates[order[min(int(rank[n]), len(order) - 1)]])
    assert torch.equal(select_starts(z0, pool, score, torch.zeros(7, dtype=torch.long)), select_starts(z0, pool, score))
    # equal scores: the own start first, then the pool in its order
    flat = select_starts(z0, pool, lambda c, r: torch.zeros(r.shape[0], dtype=torch.float64), torch.tensor([0, 1, 2] * 2 + [0]))
    assert torch.equal(flat[0], z0[0]) and torch.equal(flat[1], pool[0]) and torch.equal(flat[2], pool[1])


def test_the_own_start_wins_ties_and_an_unhelpful_pool_changes_nothing() -> None:
    z0, pool, target, _ = _setup()

    def flat(cand, rows):  # every candidate scores the same
        return torch.zeros(rows.shape[0], dtype=torch.float64)

    assert torch.equal(select_starts(z0, pool, flat), z0)
    far = pool + 1e6
    assert torch.equal(select_starts(z0, far, lambda c, r: ((z0[r] if c is None else far[c]) - target[r]).square().sum(-1)), z0)


def test_a_prior_without_samples_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="start_pool=4"):
        draw_pool(NoPrior(), 4, 0, torch.zeros(1, 63))
