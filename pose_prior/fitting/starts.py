"""Per-sample starts of a fit chosen from a pool of prior samples (`start_pool` of the fit settings).

A fit through a prior's latent is non-convex: from one fixed start (the mode, or GAN-S's most neutral
sample) many samples end in a poor basin. Scoring a seeded pool of prior samples by the fit's own objective
at the start (one forward pass per candidate, no gradients) and starting each row from the best of them and
its own start costs a small fraction of the fit. With several restarts per sample, restart r starts from the
r-th best. The pool is drawn once with a fixed seed and is the same for every row, so a row's start does not
depend on the rest of its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

from pose_prior.priors.base import Prior

# score(candidates (n,) long indices into the pool, or None for the rows' own starts; rows (n,) long) -> (n,)
StartScore = Callable[[Optional[torch.Tensor], torch.Tensor], torch.Tensor]
POOL_CHUNK_ROWS = 16384  # (row, candidate) pairs scored per call


def draw_pool(prior: Prior, size: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    """(size, D) seeded samples of `prior`, projected onto its support, in `like`'s dtype and device."""
    g = torch.Generator().manual_seed(seed)
    try:
        pool = prior.sample(size, generator=g)
    except NotImplementedError as err:
        raise ValueError(f"start_pool={size}: {err}; set start_pool to 0 for this prior") from err
    pool = pool.to(device=like.device, dtype=prior.dtype)
    return (prior.project(pool) if prior.constrained else pool).to(like)


def select_starts(z0: torch.Tensor, pool: torch.Tensor, score: StartScore, rank: Optional[torch.Tensor] = None,
                  chunk_rows: int = POOL_CHUNK_ROWS) -> torch.Tensor:
    """Per row, the lowest-scoring of its own start z0 (N, D) and the pool's candidates (M, D) -> (N, D);
    with `rank` (N,) long, the rank[n]-th lowest for row n (0 = the lowest), so that a sample's restarts
    start from its best, second best, ... candidates instead of all from the same one.

    The own start wins ties, so an empty or useless pool changes nothing. `score` sees at most `chunk_rows`
    rows per call.
    """
    N = z0.shape[0]
    rows_all = torch.arange(N, device=z0.device)
    with torch.no_grad():
        scores = [score(None, rows_all)[None]]  # (1, N)
        per_chunk = max(1, chunk_rows // max(N, 1))
        for m in range(0, pool.shape[0], per_chunk):  # candidate-major blocks: candidates m..m+c against every row
            c = min(per_chunk, pool.shape[0] - m)
            cand = torch.arange(m, m + c, device=z0.device).repeat_interleave(N)
            scores.append(score(cand, rows_all.repeat(c)).reshape(c, N))
        scores = torch.cat(scores)  # (1 + M, N)
        if rank is None:
            best = scores.argmin(0)  # (N,) 0 = the own start
        else:  # a stable sort keeps the own start (index 0) first among equal scores
            order = torch.sort(scores, dim=0, stable=True).indices  # (1 + M, N)
            best = order[rank.clamp(max=scores.shape[0] - 1), rows_all]
    return torch.where((best == 0)[:, None], z0, pool[(best - 1).clamp(min=0)])
