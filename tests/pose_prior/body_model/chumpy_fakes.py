"""Stand-ins for chumpy's classes, registered as `chumpy.ch.Ch` / `chumpy.reordering.Select` while pickling,
so a test can fabricate a licensed-SMPL-style pickle without chumpy (which no longer imports)."""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse


class Ch:
    def __init__(self, x: Any) -> None:
        self.x = x if isinstance(x, Ch) else np.asarray(x)
        self._dirty_vars = set()  # chumpy objects carry such bookkeeping in their state

    def __getstate__(self) -> dict:
        return {"x": self.x, "_dirty_vars": self._dirty_vars}


class Select:
    def __init__(self, a: Ch, idxs: np.ndarray, preferred_shape: tuple) -> None:
        self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    def __getstate__(self) -> dict:
        return {"a": self.a, "idxs": self.idxs, "preferred_shape": self.preferred_shape}


@contextlib.contextmanager
def fake_chumpy() -> Iterator[None]:
    """Make `chumpy.ch.Ch` and `chumpy.reordering.Select` importable by pickle for the duration."""
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    root, ch, reordering = (types.ModuleType(n) for n in ("chumpy", "chumpy.ch", "chumpy.reordering"))
    Ch.__module__, Select.__module__ = "chumpy.ch", "chumpy.reordering"
    ch.Ch, reordering.Select = Ch, Select
    root.ch, root.reordering = ch, reordering
    sys.modules.update({"chumpy": root, "chumpy.ch": ch, "chumpy.reordering": reordering})
    try:
        yield
    finally:
        Ch.__module__ = Select.__module__ = __name__
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_chumpy_smpl_pkl(arrays: dict[str, np.ndarray], path: Path, posedirs: np.ndarray | None = None) -> None:
    """A pickle laid out like basicModel_*_lbs_10_207_0_v1.0.0.pkl: chumpy arrays, a scipy csc J_regressor."""
    shapedirs = arrays["shapedirs"].astype(np.float64)
    # shapedirs as a chumpy selection out of a larger interleaved array (as chumpy's reorderings store them)
    base = np.stack([shapedirs, -shapedirs - 7.0], axis=-1).ravel()
    select = Select(Ch(base), np.arange(0, base.size, 2), shapedirs.shape)
    num_joints = arrays["kintree_table"].shape[1]
    if posedirs is None:
        posedirs = np.zeros((arrays["v_template"].shape[0], 3, 9 * (num_joints - 1)))
    kintree = arrays["kintree_table"].astype(np.int64)
    kintree[0, 0] = 4294967295  # the root's parent as SMPL's files store it (uint32 -1)
    model = {
        "v_template": Ch(arrays["v_template"].astype(np.float64)),
        "shapedirs": select,
        "posedirs": Ch(posedirs),
        "weights": Ch(arrays["weights"].astype(np.float64)),
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"].astype(np.float64)),
        "J": arrays["J_regressor"] @ arrays["v_template"],
        "kintree_table": kintree,
        "f": arrays["f"].astype(np.uint32),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }
    with fake_chumpy(), open(path, "wb") as fh:
        pickle.dump(model, fh, protocol=2)
