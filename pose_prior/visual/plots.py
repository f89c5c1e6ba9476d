"""Evaluation figures (matplotlib, Agg): distance CDFs (paper Fig. 2), pose t-SNE (Fig. 3), interpolation curves
(Fig. 5), and the histogram of discriminator outputs on real and generated poses (the authors' validation plot)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path | None, dpi: int = 110) -> None:
    """Save a figure as PNG atomically (a reader never sees half a picture); nothing when `path` is None."""
    if path is not None:
        from pose_prior.io import atomic_path

        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


_save = save_figure


def empirical_cdf(values: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values (n,) and the fraction of values <= each, (n,) in (0, 1]."""
    x = np.sort(np.asarray(torch.as_tensor(values).double().cpu()))
    return x, np.arange(1, x.size + 1) / max(x.size, 1)


def plot_distance_cdfs(panels: Mapping[str, Mapping[str, np.ndarray | torch.Tensor]], path: str | Path | None = None,
                       xlabel: str = "distance to nearest neighbour (mm)"):
    """One panel per title, one CDF line per label (e.g. {"recall": {"train": d, "test": d}}); returns the figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for label, values in curves.items():
            x, y = empirical_cdf(values)
            ax.plot(x, y, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of bodies")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return fig


def tsne_embedding(generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, points: int = 1500,
                   seed: int = 0, perplexity: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE (scikit-learn) of up to points/2 generated and points/2 real poses (n, 63).

    Returns the embedding (k, 2) and a boolean mask (k,) that is True for generated rows.
    """
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    gen = np.asarray(torch.as_tensor(generated).float().cpu())
    rea = np.asarray(torch.as_tensor(real).float().cpu())
    half = max(1, points // 2)
    gen = gen[np.sort(rng.choice(len(gen), size=min(half, len(gen)), replace=False))]
    rea = rea[np.sort(rng.choice(len(rea), size=min(half, len(rea)), replace=False))]
    data = np.concatenate([gen, rea]).astype(np.float64)
    perplexity = float(min(perplexity, max(1.0, (len(data) - 1) / 3)))  # sklearn needs perplexity < n
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(data)
    return emb, np.arange(len(data)) < len(gen)


def plot_tsne(embedding: np.ndarray, is_generated: np.ndarray, path: str | Path | None = None, title: str = ""):
    """Real poses under generated ones, as in the paper's Fig. 3; returns the figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*embedding[~is_generated].T, s=4, c="tab:blue", alpha=0.5, label="real (train)")
    ax.scatter(*embedding[is_generated].T, s=4, c="tab:orange", alpha=0.5, label="generated")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_interpolation_curves(curves: Mapping[str, np.ndarray | torch.Tensor], path: str | Path | None = None):
    """Mean normalised step distance per interpolation step, one line per prior (Fig. 5); returns the figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, curve in curves.items():
        c = np.asarray(torch.as_tensor(curve).double().cpu())
        ax.plot(np.arange(1, c.size + 1), c, marker="o", ms=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("interpolation step i")
    ax.set_ylabel("d_i / (D(M_0, M_n) / n)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_discriminator_histogram(real: np.ndarray | torch.Tensor, generated: np.ndarray | torch.Tensor,
                                 path: str | Path | None = None, title: str = "", bins: int = 50):
    """Histograms of the discriminator's whole-pose output on real and on generated poses (one axis)."""
    plt = _pyplot()
    r = np.asarray(torch.as_tensor(real).double().cpu()).reshape(-1)
    g = np.asarray(torch.as_tensor(generated).double().cpu()).reshape(-1)
    both = np.concatenate([r, g])
    edges = np.linspace(both.min(), both.max() + 1e-9, bins + 1) if both.size else np.linspace(0, 1, bins + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.hist(r, bins=edges, alpha=0.6, label=f"real (mean {r.mean():.3f})" if r.size else "real")
    ax.hist(g, bins=edges, alpha=0.6, label=f"generated (mean {g.mean():.3f})" if g.size else "generated")
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("discriminator output (targets: real 1, generated 0)")
    ax.set_ylabel("poses")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return fig


def close(fig) -> None:
    _pyplot().close(fig)
