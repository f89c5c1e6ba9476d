"""Headless mesh pictures with matplotlib: shaded, painter-sorted triangles, front and side views.

matplotlib is used because it renders headless everywhere (docs/design.md#library-choices: pyrender needs EGL and is
unmaintained; OSMesa/trimesh/pytorch3d rendering fail here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pose_prior.visual.plots import _pyplot, save_figure


def _view(vertices: np.ndarray, side: bool) -> np.ndarray:
    """(V, 3) in SMPL axes (y up, facing +z) -> camera coordinates (x right, y up, z towards viewer)."""
    if not side:
        return vertices
    # side view: look from the subject's left (+x), so the body faces right
    return np.stack([vertices[:, 2], vertices[:, 1], -vertices[:, 0]], axis=1)


def draw_mesh(ax, vertices: np.ndarray, faces: np.ndarray, side: bool = False, color=(0.62, 0.72, 0.86),
              half_extent: float | None = None) -> None:
    """Draw one mesh on a matplotlib Axes, orthographic, Lambert-shaded, back-to-front.

    With `half_extent`, the view is a square of that half-size around the mesh centre, so several
    meshes drawn with the same value share one scale.
    """
    from matplotlib.collections import PolyCollection

    v = _view(np.asarray(vertices, dtype=np.float64), side)
    tris = v[faces]  # (F, 3, 3)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.array([0.3, 0.4, 1.0])
    light /= np.linalg.norm(light)
    shade = np.clip(np.abs(normals @ light), 0.15, 1.0)
    order = np.argsort(tris[:, :, 2].mean(axis=1))  # far to near
    colors = np.clip(np.asarray(color)[None, :] * shade[order, None], 0, 1)
    ax.add_collection(PolyCollection(tris[order, :, :2], facecolors=colors, edgecolors="none", antialiased=False))
    if half_extent is None:
        ax.set_xlim(v[:, 0].min() - 0.05, v[:, 0].max() + 0.05)
        ax.set_ylim(v[:, 1].min() - 0.05, v[:, 1].max() + 0.05)
    else:
        cx, cy = (v[:, 0].max() + v[:, 0].min()) / 2, (v[:, 1].max() + v[:, 1].min()) / 2
        ax.set_xlim(cx - half_extent, cx + half_extent)
        ax.set_ylim(cy - half_extent, cy + half_extent)
    ax.set_aspect("equal")
    ax.axis("off")


def render_bodies(
    vertices: np.ndarray, faces: np.ndarray, path: str | Path | None = None, titles: Sequence[str] | None = None
):
    """(N, V, 3) bodies -> a figure with a front row and a side row; saved to `path` (PNG) if given."""
    plt = _pyplot()
    n = len(vertices)
    verts = np.asarray(vertices, dtype=np.float64)
    half = 0.5 * float((verts.max(axis=1) - verts.min(axis=1)).max()) + 0.05  # one scale for every body
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 4.8), squeeze=False)
    for i in range(n):
        draw_mesh(axes[0, i], verts[i], faces, side=False, half_extent=half)
        draw_mesh(axes[1, i], verts[i], faces, side=True, half_extent=half)
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=8)
    axes[0, 0].text(0.0, 1.02, "front", transform=axes[0, 0].transAxes, fontsize=8)
    axes[1, 0].text(0.0, 1.02, "side", transform=axes[1, 0].transAxes, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return fig


GENERATED_COLOR = (0.86, 0.62, 0.55)
REAL_COLOR = (0.62, 0.72, 0.86)


def render_nearest_pairs(generated: np.ndarray, nearest: np.ndarray, faces: np.ndarray, distances_mm: Sequence[float],
                         path: str | Path | None = None, title: str = ""):
    """Paper Fig. 4: generated bodies (top row) above their nearest training bodies (bottom row), front view."""
    plt = _pyplot()
    n = len(generated)
    both = np.concatenate([np.asarray(generated, np.float64), np.asarray(nearest, np.float64)])
    half = 0.5 * float((both.max(axis=1) - both.min(axis=1)).max()) + 0.05 if n else 1.0
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.9 * max(n, 1), 4.4), squeeze=False)
    for i in range(n):
        draw_mesh(axes[0, i], generated[i], faces, color=GENERATED_COLOR, half_extent=half)
        draw_mesh(axes[1, i], nearest[i], faces, color=REAL_COLOR, half_extent=half)
        axes[0, i].set_title(f"{distances_mm[i]:.0f} mm", fontsize=8)
    axes[0, 0].text(0.0, 1.12, "generated", transform=axes[0, 0].transAxes, fontsize=8)
    axes[1, 0].text(0.0, 1.02, "nearest training body", transform=axes[1, 0].transAxes, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return fig


def render_sequences(sequences: np.ndarray, faces: np.ndarray, curves: np.ndarray | None = None,
                     path: str | Path | None = None, row_titles: Sequence[str] | None = None):
    """Paper Fig. 6 / supp. Figs. 7-8: interpolation sequences (P, S, V, 3), one row per pair (front view),
    each ending with its transition curve `curves` (P, S - 1): d_i normalised by the straight-line step."""
    plt = _pyplot()
    seq = np.asarray(sequences, dtype=np.float64)
    P, S = seq.shape[:2]
    half = 0.5 * float((seq.max(axis=2) - seq.min(axis=2)).max()) + 0.05
    extra = 0 if curves is None else 2
    fig, axes = plt.subplots(P, S + extra, figsize=(1.3 * (S + extra), 2.2 * P), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * S + [1] * extra})
    for p in range(P):
        for s in range(S):
            draw_mesh(axes[p, s], seq[p, s], faces, half_extent=half)
        if row_titles is not None:
            axes[p, 0].set_title(row_titles[p], fontsize=8, loc="left")
        if curves is not None:
            axes[p, S].axis("off")
            ax = axes[p, S + 1]
            c = np.asarray(curves[p], dtype=np.float64)
            ax.plot(np.arange(1, c.size + 1), c, marker="o", ms=2)
            ax.axhline(1.0, color="grey", lw=0.6, ls="--")
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    return fig
