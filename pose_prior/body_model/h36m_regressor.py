"""The H3.6M joint regressor to evaluate with: SPIN's file for SMPL, the shipped one for the open models.

The open models' 17-joint regressors (`assets/open_{light_,}smpl_J_regressor_h36m.npy`, built by
tools/build_open_h36m_regressor.py) use the models' own kinematic-joint regressor rows plus a head-top
vertex: they are H3.6M-*style*, not SPIN's regressor, so open-model errors are not comparable with
published SMPL numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
OPEN_H36M_REGRESSORS = {
    "open": ASSETS_DIR / "open_smpl_J_regressor_h36m.npy",
    "open-light": ASSETS_DIR / "open_light_smpl_J_regressor_h36m.npy",
}


def load_h36m_regressor(path: str | os.PathLike, num_vertices: int | None = None) -> np.ndarray:
    """(17, V) float64 C-ordered regressor from an .npy file, checked against num_vertices.

    SPIN's data/J_regressor_h36m.npy is stored (17, 6890) float64 in Fortran order; the copy is C-ordered.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (an H3.6M joint regressor, e.g. SPIN's data/J_regressor_h36m.npy)")
    try:
        reg = np.load(path, allow_pickle=False)
    except ValueError as err:  # an object array needs pickle
        raise ValueError(f"{path}: not a plain .npy array ({err})") from err
    if reg.dtype.kind != "f":
        raise ValueError(f"{path}: expected a float64 array, got dtype {reg.dtype}")
    if reg.ndim != 2 or reg.shape[0] != 17:
        raise ValueError(f"{path}: expected shape (17, V), got {reg.shape}")
    if num_vertices is not None and reg.shape[1] != num_vertices:
        raise ValueError(
            f"{path}: regressor has {reg.shape[1]} vertex columns but the body model has {num_vertices} vertices "
            "(SPIN's file is for SMPL's 6890-vertex mesh; the open models have their own regressor)"
        )
    if not np.isfinite(reg).all():
        raise ValueError(f"{path}: contains non-finite values")
    return np.ascontiguousarray(reg, dtype=np.float64)


def h36m_regressor_for(body_model_path: str, j_regressor: str | None = None, num_vertices: int | None = None) -> np.ndarray:
    """The regressor for a body model: `j_regressor` if given, else the shipped one of an open model."""
    if j_regressor:
        return load_h36m_regressor(j_regressor, num_vertices)
    if body_model_path in OPEN_H36M_REGRESSORS:
        return load_h36m_regressor(OPEN_H36M_REGRESSORS[body_model_path], num_vertices)
    raise ValueError(
        f"body model {body_model_path!r} needs an H3.6M joint regressor: set j_regressor to SPIN's "
        "data/J_regressor_h36m.npy (17 x 6890)"
    )
