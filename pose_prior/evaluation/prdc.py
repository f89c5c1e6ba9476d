"""Precision, recall, density and coverage (Naeem et al., ICML 2020), chunked and memory-bounded.

Definitions as the reference `prdc` package (clovaai/generative-evaluation-prdc, `compute_prdc`), which
DPoser-X runs on 63-d axis-angle poses with k = 3 (10k train poses as the real set, 50k samples as fake):

- radius of a point: distance to its k-th nearest neighbour in its own set, i.e. the (k+1)-th smallest
  value of its row of the set's distance matrix, the zero self-distance included;
- precision: fraction of fakes inside at least one real ball (d(real, fake) < radius(real));
- recall: fraction of reals inside at least one fake ball (d(real, fake) < radius(fake));
- density: (1/k) x mean over fakes of the number of real balls containing it;
- coverage: fraction of reals whose nearest fake lies inside the real's own ball.

The reference builds the full fake x fake matrix (50k^2 floats, 10 GB); here every distance matrix is
cut into row blocks of `chunk` rows, so memory is O(chunk x N). Distances are Euclidean in float64
(|a|^2 + |b|^2 - 2 a.b, clamped at 0). With backend="faiss" the k-NN radii come from an exact flat FAISS
search (float32), whose candidates are re-measured in float64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Backend = Literal["torch", "faiss"]
FAISS_MARGIN = 8  # extra float32 candidates re-measured in float64 (guards near-ties in the ordering)


def _tensor64(x: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if t.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=torch.float64)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(n, D), (m, D) -> (n, m) Euclidean distances (float64 inputs give float64 distances)."""
    a_sq = a.square().sum(-1, keepdim=True)  # (n, 1)
    b_sq = b.square().sum(-1) if b_sq is None else b_sq  # (m,)
    d2 = a_sq + b_sq[None] - 2.0 * (a @ b.T)
    return d2.clamp_(min=0.0).sqrt_()


def knn_radii(x: np.ndarray | torch.Tensor, k: int, chunk: int = 1024, backend: Backend = "torch") -> torch.Tensor:
    """(N, D) -> (N,) float64 distance of each point to its k-th nearest neighbour in x (self excluded,
    i.e. the (k+1)-th smallest distance of its row, self included), chunked over rows."""
    xs = _tensor64(x)
    n = xs.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    if backend == "faiss":
        return _knn_radii_faiss(xs, k, chunk)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'faiss', got {backend!r}")
    x_sq = xs.square().sum(-1)
    out = torch.empty(n, dtype=torch.float64, device=xs.device)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        d = pairwise_distances(xs[rows], xs, x_sq)  # (c, N)
        idx = torch.arange(rows.start, rows.stop, device=xs.device)
        d[idx - rows.start, idx] = 0.0  # the self-distance is exactly 0, as in sklearn's pairwise_distances(X)
        out[rows] = torch.topk(d, k + 1, dim=1, largest=False).values[:, -1]
    return out


def _knn_radii_faiss(xs: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    from pose_prior.evaluation.nearest.faiss_index import import_faiss

    faiss = import_faiss()  # optional: only this backend needs it

    n = xs.shape[0]
    base = np.ascontiguousarray(xs.cpu().numpy().astype(np.float32))
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    m = min(n, k + 1 + FAISS_MARGIN)
    out = torch.empty(n, dtype=torch.float64)
    cpu = xs.cpu()
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        _, ids = index.search(base[start:stop], m)  # (c, m) candidate ids, nearest first (self included)
        ids_t = torch.from_numpy(ids).long()
        cand = cpu[ids_t]  # (c, m, D)
        d = (cand - cpu[start:stop, None]).square().sum(-1).sqrt()  # (c, m) exact float64
        d[ids_t == torch.arange(start, stop)[:, None]] = 0.0
        out[start:stop] = torch.sort(d, dim=1).values[:, k]
    return out.to(xs.device)


def prdc(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3, chunk: int = 1024,
         backend: Backend = "torch", device: torch.device | str | None = None) -> dict[str, float]:
    """{precision, recall, density, coverage} of fake (M, D) against real (N, D), k nearest neighbours.

    Memory is O(chunk x max(N, M)) float64; the result equals `prdc.compute_prdc(real, fake, k)`.
    """
    r = _tensor64(real, device)
    f = _tensor64(fake, r.device)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    real_radii = knn_radii(r, k, chunk, backend)  # (N,)
    fake_radii = knn_radii(f, k, chunk, backend)  # (M,)
    f_sq = f.square().sum(-1)
    in_real_ball = torch.zeros(f.shape[0], dtype=torch.bool, device=r.device)  # precision, per fake
    ball_count = torch.zeros(f.shape[0], dtype=torch.float64, device=r.device)  # density, per fake
    recalled = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    covered = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    for start in range(0, r.shape[0], chunk):
        rows = slice(start, min(start + chunk, r.shape[0]))
        d = pairwise_distances(r[rows], f, f_sq)  # (c, M) real rows x fakes
        inside = d < real_radii[rows, None]  # fake j inside real i's ball
        in_real_ball |= inside.any(0)
        ball_count += inside.sum(0)
        recalled[rows] = (d < fake_radii[None]).any(1)
        covered[rows] = d.min(1).values < real_radii[rows]
    return {
        "precision": float(in_real_ball.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(ball_count.mean() / k),
        "coverage": float(covered.double().mean()),
    }
