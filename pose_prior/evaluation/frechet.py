"""Gaussian moments of pose / joint vectors and the Fréchet distance between two Gaussians (FID).

The generation benchmarks of DPoser-X and NRDF report FID = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2))
between Gaussians fitted to raw vectors (no feature network): 63-d axis-angle poses (DPoser-X) or 66-d
joint positions (NRDF). Moments are float64 with numpy's `np.cov(x, rowvar=False)` definition (ddof = 1)
and are accumulated over chunks, so a memory-mapped split of millions of rows is never loaded at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

FID_EPS = 1e-6  # added to both diagonals when the square root is not finite (the peers' retry)


def _as_float64(rows: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    return np.asarray(rows, dtype=np.float64)


class MomentAccumulator:
    """Streaming mean and covariance (ddof = 1) of (N, D) rows fed in chunks, in float64.

    Sums are taken around a shift (the first chunk's mean) so that sum(x x^T) - n mu mu^T does not lose
    the covariance to cancellation when |mean| >> std.
    """

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.total: np.ndarray | None = None  # (D,) sum of (x - shift)
        self.outer: np.ndarray | None = None  # (D, D) sum of (x - shift)(x - shift)^T

    def update(self, rows: np.ndarray | torch.Tensor) -> MomentAccumulator:
        x = _as_float64(rows)
        if x.ndim != 2:
            raise ValueError(f"expected (N, D) rows, got shape {x.shape}")
        if x.shape[0] == 0:
            return self
        if self.shift is None:
            self.shift = x.mean(0)
            self.total = np.zeros_like(self.shift)
            self.outer = np.zeros((x.shape[1], x.shape[1]))
        d = x - self.shift
        self.total += d.sum(0)
        self.outer += d.T @ d
        self.count += x.shape[0]
        return self

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), covariance (D, D)) with ddof = 1, as `np.cov(x, rowvar=False)`."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 rows, got {self.count}")
        mean_d = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean_d, mean_d)) / (self.count - 1)
        return self.shift + mean_d, (cov + cov.T) / 2


def gaussian_moments(chunks: Iterable[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of rows given whole (N, D) or as an iterable of (n_i, D) chunks."""
    acc = MomentAccumulator()
    if isinstance(chunks, (np.ndarray, torch.Tensor)):
        chunks = [chunks]
    for chunk in chunks:
        acc.update(chunk)
    return acc.moments()


def _trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2: the eigenvalues of S1 S2 are those of the symmetric
    S1^1/2 S2 S1^1/2, so the trace is sum(sqrt(eig)). Equal to the real trace of scipy's `sqrtm(S1 @ S2)`
    (the peers' code) but without its complex round-off on near-singular products."""
    w1, v1 = np.linalg.eigh(cov1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    eig = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     eps: float = FID_EPS) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), float64; when the square root is not
    finite it is retried with `eps` added to both diagonals (as the FID code DPoser-X / NRDF use)."""
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    cov1, cov2 = np.atleast_2d(_as_float64(cov1)), np.atleast_2d(_as_float64(cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise ValueError(f"moment shapes differ: {mu1.shape} vs {mu2.shape}, {cov1.shape} vs {cov2.shape}")
    diff = mu1 - mu2
    try:
        tr_covmean = _trace_sqrt_product(cov1, cov2)
    except np.linalg.LinAlgError:
        tr_covmean = float("nan")
    if not np.isfinite(tr_covmean):
        offset = np.eye(cov1.shape[0]) * eps
        tr_covmean = _trace_sqrt_product(cov1 + offset, cov2 + offset)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


def fid(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the rows of a (N, D) and b (M, D)."""
    return frechet_distance(*gaussian_moments(a), *gaussian_moments(b))
