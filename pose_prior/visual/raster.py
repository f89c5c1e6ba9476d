"""A small painter's-algorithm mesh rasteriser (PIL): projected body meshes drawn onto images.

Used to make the synthetic EFT-format images (coloured body parts on a noisy background) and to draw
predicted meshes over their input crops. Orthographic: callers pass vertices already in pixel
coordinates (x right, y down) plus a depth per vertex (larger = farther from the camera).
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw


def part_palette(num_parts: int = 24, seed: int = 3) -> np.ndarray:
    """(num_parts, 3) distinct colours in [0, 1] (evenly spaced hues, shuffled, fixed)."""
    order = np.random.default_rng(seed).permutation(num_parts)
    hues = (np.arange(num_parts) / num_parts)[order]
    return np.array([colorsys.hsv_to_rgb(h, 0.65, 0.95) for h in hues])


def part_face_colors(lbs_weights: np.ndarray, faces: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Per-face colours (F, 3) from each face's first vertex's dominant skinning joint."""
    part = np.asarray(lbs_weights).argmax(axis=1)  # (V,)
    palette = part_palette(int(np.asarray(lbs_weights).shape[1])) if palette is None else palette
    return palette[part[np.asarray(faces)[:, 0]]]


def draw_mesh(
    image: Image.Image | np.ndarray,
    vertices_px: np.ndarray,
    depth: np.ndarray,
    faces: np.ndarray,
    face_colors: np.ndarray | tuple[float, float, float] = (0.62, 0.72, 0.86),
    alpha: float = 1.0,
) -> np.ndarray:
    """Draw a mesh (V, 2) pixels + (V,) depth over `image` (H, W, 3) uint8; far faces first; returns uint8."""
    base = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB") if isinstance(image, np.ndarray) \
        else image.convert("RGB")
    layer = base.copy()
    v2 = np.asarray(vertices_px, dtype=np.float64)
    z = np.asarray(depth, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    tri3 = np.concatenate([v2, z[:, None]], axis=1)[faces]  # (F, 3, 3)
    normals = np.cross(tri3[:, 1] - tri3[:, 0], tri3[:, 2] - tri3[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = np.clip(np.abs(normals[:, 2]) * 0.8 + 0.2, 0.2, 1.0)  # light from the camera
    colors = np.broadcast_to(np.asarray(face_colors, dtype=np.float64), (len(faces), 3))
    rgb = np.clip(colors * shade[:, None] * 255.0, 0, 255).astype(np.uint8)
    order = np.argsort(-tri3[:, :, 2].mean(axis=1), kind="stable")  # far to near
    draw = ImageDraw.Draw(layer)
    pts = tri3[:, :, :2]
    for f in order:
        p = pts[f]
        draw.polygon([(p[0, 0], p[0, 1]), (p[1, 0], p[1, 1]), (p[2, 0], p[2, 1])], fill=tuple(int(c) for c in rgb[f]))
    if alpha >= 1.0:
        return np.asarray(layer)
    mask = Image.new("L", base.size, 0)
    mdraw = ImageDraw.Draw(mask)
    for p in pts:
        mdraw.polygon([(p[0, 0], p[0, 1]), (p[1, 0], p[1, 1]), (p[2, 0], p[2, 1])], fill=int(255 * alpha))
    return np.asarray(Image.composite(layer, base, mask))


def image_grid(images: list[np.ndarray], columns: int = 4, pad: int = 2) -> np.ndarray:
    """Tile (H, W, 3) uint8 images of equal size into one (rows*H, cols*W, 3) image."""
    if not images:
        raise ValueError("image_grid: no images")
    h, w = images[0].shape[:2]
    cols = max(1, min(columns, len(images)))
    rows = (len(images) + cols - 1) // cols
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return grid
