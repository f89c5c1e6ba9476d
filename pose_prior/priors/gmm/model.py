"""Gaussian-mixture pose prior (the SMPLify baseline): density, max-mixture penalty, sampling, fitting.

`GaussianMixturePrior` holds K full-covariance Gaussians over the 63-d SMPL-H body pose (axis-angle,
joints 1..21). Everything is evaluated through Cholesky factors in the buffers' dtype (float64 by
default), so the numbers agree with a float64 scipy reference to round-off.

SMPLify's penalty (smplify-x `MaxMixturePrior`, "merged" path, used by smplify-x and SPIN) is
    GMM(theta) = min_k [ 1/2 (theta - mu_k)^T P_k (theta - mu_k) - log nll_w_k ],
    nll_w_k = w_k / ((2 pi)^(D/2) * d_k / min_j d_j),   d_k = sqrt(det Sigma_k),
i.e. the max-mixture negative log-likelihood -max_k log(w_k N(theta; mu_k, Sigma_k)) minus the constant
log min_j d_j (docs/protocols.md#gmm-pose-prior).

The published `gmm_08.pkl` is 69-d (SMPL joints 1..23). Its first 63 entries are the SMPL-H body pose in
the same joint order; `load_smplify_gmm` reduces it to 63-d either by marginalising (default) or by
zero-padding theta to 69-d as smplify-x does when it drives SMPL from a 63-d pose (`append_wrists`).
"""

from __future__ import annotations

import math
import os
import time
from typing import Literal

import numpy as np
import torch
from torch import nn

from pose_prior.rows import sample_rows

POSE_DIM = 63  # SMPL-H body pose: 21 joints x axis-angle
SMPL_POSE_DIM = 69  # SMPL body pose: 23 joints x axis-angle (the dimension of gmm_08.pkl)
GMM_PICKLE_KEYS = ("means", "covars", "weights")


class GaussianMixturePrior(nn.Module):
    """Full-covariance Gaussian mixture over body poses (B, pose_dim); state = means, covariances, weights.

    `pad_zeros` > 0 evaluates a model of dimension pose_dim + pad_zeros on theta padded with that many
    zeros (smplify-x's way of applying the 69-d SMPL GMM to a 63-d pose).
    Weights are used as given (SMPLify's penalty does not renormalise them).
    """

    def __init__(
        self,
        means: torch.Tensor | np.ndarray,
        covariances: torch.Tensor | np.ndarray,
        weights: torch.Tensor | np.ndarray,
        pad_zeros: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(np.asarray(means) if not torch.is_tensor(means) else means).to(dtype)
        covs = torch.as_tensor(
            np.asarray(covariances) if not torch.is_tensor(covariances) else covariances
        ).to(dtype)
        weights = torch.as_tensor(np.asarray(weights) if not torch.is_tensor(weights) else weights).to(dtype)
        _check_mixture_shapes(means, covs, weights, source="GaussianMixturePrior")
        if not 0 <= int(pad_zeros) < means.shape[1]:
            raise ValueError(f"pad_zeros must be in [0, {means.shape[1]}), got {pad_zeros}")
        self.register_buffer("means", means.contiguous())  # (K, D)
        self.register_buffer("covariances", covs.contiguous())  # (K, D, D)
        self.register_buffer("weights", weights.contiguous())  # (K,)
        self.register_buffer("pad_zeros", torch.tensor(int(pad_zeros), dtype=torch.long))
        # Derived quantities (not saved; recomputed after load_state_dict).
        self.register_buffer("cholesky", torch.empty_like(covs), persistent=False)  # (K, D, D)
        self.register_buffer("half_log_det", torch.empty_like(weights), persistent=False)  # (K,)
        self._refresh()
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module._refresh())

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> GaussianMixturePrior:
        """Build a prior (any K, D) from `state_dict()` output."""
        missing = [k for k in ("means", "covariances", "weights") if k not in state]
        if missing:
            raise KeyError(f"GMM state dict lacks {missing}; has {sorted(state)}")
        return cls(
            state["means"],
            state["covariances"],
            state["weights"],
            pad_zeros=int(state.get("pad_zeros", 0)),
            dtype=state["means"].dtype,
        )

    def _refresh(self) -> None:
        """Recompute Cholesky factors and log-determinants from the covariances."""
        chol, info = torch.linalg.cholesky_ex(self.covariances)
        bad = torch.nonzero(info).flatten().tolist()
        if bad:
            raise ValueError(f"GMM covariance(s) of component(s) {bad} are not positive definite")
        self.cholesky.copy_(chol)
        self.half_log_det.copy_(torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1))

    # --- shapes ----------------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def model_dim(self) -> int:
        """Dimension D of the Gaussians (69 for gmm_08.pkl in zero_pad mode)."""
        return int(self.means.shape[1])

    @property
    def pose_dim(self) -> int:
        """Dimension of the poses this prior takes (model_dim - pad_zeros)."""
        return self.model_dim - int(self.pad_zeros)

    def _prepare(self, theta: torch.Tensor) -> torch.Tensor:
        if theta.dim() != 2 or theta.shape[1] != self.pose_dim:
            raise ValueError(f"GMM prior expects poses of shape (B, {self.pose_dim}), got {tuple(theta.shape)}")
        x = theta.to(self.means.dtype)
        pad = int(self.pad_zeros)
        if pad:
            x = torch.cat([x, x.new_zeros(x.shape[0], pad)], dim=1)  # (B, D)
        return x

    def mahalanobis_sq(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, pose_dim) -> (B, K): (theta - mu_k)^T Sigma_k^-1 (theta - mu_k), via Cholesky solves."""
        x = self._prepare(theta)
        diff = (x[None, :, :] - self.means[:, None, :]).transpose(1, 2)  # (K, D, B)
        white = torch.linalg.solve_triangular(self.cholesky, diff, upper=False)  # (K, D, B)
        return white.square().sum(1).transpose(0, 1)  # (B, K)

    def component_log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, pose_dim) -> (B, K): log w_k + log N(theta; mu_k, Sigma_k) (buffers' dtype)."""
        d = self.model_dim
        log_norm = -0.5 * d * math.log(2.0 * math.pi) - self.half_log_det  # (K,)
        return torch.log(self.weights) + log_norm - 0.5 * self.mahalanobis_sq(theta)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, pose_dim) -> (B,): log of the mixture density sum_k w_k N(theta; mu_k, Sigma_k)."""
        return torch.logsumexp(self.component_log_prob(theta), dim=1).to(theta.dtype)

    def penalty_constants(self) -> torch.Tensor:
        """(K,): -log nll_w_k = -log w_k + D/2 log 2pi + log d_k - log min_j d_j (SMPLify's merged path)."""
        d = self.model_dim
        return (
            -torch.log(self.weights)
            + 0.5 * d * math.log(2.0 * math.pi)
            + self.half_log_det
            - self.half_log_det.min()
        )

    def max_mixture_penalty(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, pose_dim) -> (B,): SMPLify's GMM penalty min_k [1/2 maha_k - log nll_w_k]."""
        per_comp = 0.5 * self.mahalanobis_sq(theta) + self.penalty_constants()  # (B, K)
        return per_comp.min(dim=1).values.to(theta.dtype)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """The max-mixture penalty (what SMPLify adds to its fitting loss)."""
        return self.max_mixture_penalty(theta)

    # --- sampling and summaries ------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Draw n poses (n, pose_dim): component ~ weights, then mu_k + L_k eps (padded dims dropped)."""
        n = int(n)
        gen_device = generator.device if generator is not None else self.means.device
        comp = torch.multinomial(self.weights.to(gen_device), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.model_dim, generator=generator, device=gen_device, dtype=self.means.dtype)
        comp, eps = comp.to(self.means.device), eps.to(self.means.device)
        x = torch.empty_like(eps)  # (n, D)
        for k in range(self.num_components):  # per component: no (n, D, D) gather
            sel = comp == k
            x[sel] = self.means[k] + eps[sel] @ self.cholesky[k].T
        return x[:, : self.pose_dim].to(dtype or self.means.dtype)

    def mean_pose(self) -> torch.Tensor:
        """(pose_dim,): sum_k w_k mu_k, SMPLify's initial body pose (`get_mean`)."""
        return (self.weights[:, None] * self.means).sum(0)[: self.pose_dim]

    def extra_repr(self) -> str:
        return f"K={self.num_components}, model_dim={self.model_dim}, pose_dim={self.pose_dim}"


def _check_mixture_shapes(means, covs, weights, source: str) -> None:
    if means.dim() != 2:
        raise ValueError(f"{source}: `means` must be (K, D), got {tuple(means.shape)}")
    k, d = means.shape
    if tuple(covs.shape) != (k, d, d):
        raise ValueError(f"{source}: covariances must be ({k}, {d}, {d}) to match means, got {tuple(covs.shape)}")
    if tuple(weights.shape) != (k,):
        raise ValueError(f"{source}: `weights` must be ({k},), got {tuple(weights.shape)}")
    if not bool((weights > 0).all()):
        raise ValueError(f"{source}: mixture weights must be positive, got {weights.tolist()}")


# --- fitting -------------------------------------------------------------------------------------
def fit_gmm(
    poses: np.ndarray | torch.Tensor,
    n_components: int = 8,
    max_samples: int | None = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    n_init: int = 1,
    verbose: bool = False,
) -> GaussianMixturePrior:
    """Fit a full-covariance GMM to poses (N, D) with scikit-learn's EM; float64 throughout.

    `max_samples` draws that many rows uniformly without replacement (seeded) first; rows are read in
    sorted order so a memory-mapped array is read sequentially.
    """
    from sklearn.mixture import GaussianMixture

    data = poses.detach().cpu().numpy() if torch.is_tensor(poses) else poses
    if data.ndim != 2:
        raise ValueError(f"fit_gmm expects poses of shape (N, D), got {data.shape}")
    n = data.shape[0]
    if max_samples is not None and n > int(max_samples):
        data = data[sample_rows(n, int(max_samples), seed)]
    data = np.asarray(data, dtype=np.float64)
    if data.shape[0] < n_components:
        raise ValueError(f"fit_gmm needs at least n_components={n_components} poses, got {data.shape[0]}")
    if not np.isfinite(data).all():
        raise ValueError("fit_gmm: poses contain NaN or inf")
    t0 = time.perf_counter()
    gm = GaussianMixture(
        n_components=n_components,
        covariance_type="full",
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        n_init=n_init,
        random_state=seed,
        verbose=2 if verbose else 0,
    ).fit(data)
    if verbose:
        print(
            f"fit_gmm: {data.shape[0]} x {data.shape[1]}, K={n_components}, {gm.n_iter_} EM iterations, "
            f"converged={gm.converged_}, {time.perf_counter() - t0:.1f} s"
        )
    return GaussianMixturePrior(gm.means_, gm.covariances_, gm.weights_)


# --- the published SMPLify prior -----------------------------------------------------------------
def load_smplify_gmm(
    path: str | os.PathLike, reduce: Literal["marginalise", "zero_pad"] = "marginalise"
) -> GaussianMixturePrior:
    """Load SMPLify's `gmm_08.pkl` (69-d) as a prior over the 63-d body pose.

    reduce="marginalise" (default): the exact marginal of the 69-d mixture over the first 63 entries
    (mu[:, :63], Sigma[:, :63, :63]; precisions, determinants and the 63-d constant recomputed). It is
    the model's own density of a 63-d SMPL-H pose, makes no assumption about the two hand joints, and
    its samples are exactly the first 63 entries of the 69-d model's samples.
    reduce="zero_pad": the 69-d model evaluated on theta padded with 6 zeros, as smplify-x does when a
    63-d pose drives SMPL (`append_wrists`); it reproduces smplify-x's numbers with VPoser-era code.
    Which of the two the paper used is not known (docs/protocols.md#gmm-pose-prior).
    The file is read with a restricted unpickler: only numpy arrays and plain containers are allowed.
    """
    if reduce not in ("marginalise", "zero_pad"):
        raise ValueError(f"load_smplify_gmm: reduce must be 'marginalise' or 'zero_pad', got {reduce!r}")
    data = _read_gmm_pickle(path)
    means = np.asarray(data["means"], dtype=np.float64)
    covs = np.asarray(data["covars"], dtype=np.float64)
    weights = np.asarray(data["weights"], dtype=np.float64).reshape(-1)
    try:
        _check_mixture_shapes(torch.from_numpy(means), torch.from_numpy(covs), torch.from_numpy(weights), "")
    except ValueError as err:
        raise ValueError(f"{path}: `means`/`covars`/`weights` do not form a mixture:{err}") from None
    dim = means.shape[1]
    if dim < POSE_DIM:
        raise ValueError(f"{path}: GMM dimension {dim} < {POSE_DIM}; expected SMPL's 69-d body pose")
    if reduce == "marginalise":
        return GaussianMixturePrior(means[:, :POSE_DIM], covs[:, :POSE_DIM, :POSE_DIM], weights)
    return GaussianMixturePrior(means, covs, weights, pad_zeros=dim - POSE_DIM)


def _read_gmm_pickle(path: str | os.PathLike) -> dict:
    """The dict inside gmm_08.pkl, read by the restricted unpickler (numpy arrays + containers only).

    The unpickler's data allow-list covers both the Python 2 original (array bytes as latin1 strings)
    and Python 3 protocol-0 re-pickles (array bytes through `_codecs.encode`).
    """
    from pose_prior.safe_pickle import restricted_load_dict

    data = restricted_load_dict(path, f"GMM arrays {GMM_PICKLE_KEYS}")
    missing = [k for k in GMM_PICKLE_KEYS if k not in data]
    if missing:
        raise KeyError(f"{path}: GMM pickle lacks key(s) {missing}; has {sorted(map(str, data))}")
    for key in GMM_PICKLE_KEYS:
        if not isinstance(data[key], np.ndarray):
            raise ValueError(f"{path}: `{key}` is a {type(data[key]).__name__}, expected a numpy array")
    return data
