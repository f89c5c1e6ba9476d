"""A restricted unpickler for model files from the chumpy era (SMPL / SMPL-H .pkl, SMPLify's gmm_08.pkl).

Only numpy arrays/dtypes/scalars, scipy.sparse CSC/CSR matrices, plain containers and chumpy arrays are
accepted; chumpy objects (`chumpy.ch.Ch` with state {'x': array}, `chumpy.reordering.*` selections with
state {'a', 'idxs', 'preferred_shape'}) are turned into plain numpy arrays without importing chumpy.
Every other class is refused with an error naming the file and the class.
"""

from __future__ import annotations

import codecs
import copyreg
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

_NDARRAY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, any numpy version
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]  # numpy's multiarray.scalar

# (module, name) -> object. numpy moved `core` to `_core` in 2.0; both spellings map to the same objects.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    # Python 3 writes bytes (e.g. numpy array data) at protocols 0-2 as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_core, "_reconstruct")] = _NDARRAY_RECONSTRUCT
    _ALLOWED[(_core, "scalar")] = _NUMPY_SCALAR
for _mod in ("scipy.sparse.csc", "scipy.sparse._csc"):
    _ALLOWED[(_mod, "csc_matrix")] = scipy.sparse.csc_matrix
for _mod in ("scipy.sparse.csr", "scipy.sparse._csr"):
    _ALLOWED[(_mod, "csr_matrix")] = scipy.sparse.csr_matrix


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a class outside the allowed set."""


class ChumpyPlaceholder:
    """Stands in for any chumpy class during unpickling; keeps the pickled state for conversion."""

    chumpy_class = "chumpy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or {}
        self.state = dict(state) if isinstance(state, dict) else {"x": state}


def _chumpy_class(module: str, name: str) -> type:
    return type(name, (ChumpyPlaceholder,), {"chumpy_class": f"{module}.{name}"})


def chumpy_to_numpy(obj: Any, source: str = "<pickle>") -> Any:
    """Replace chumpy placeholders (recursively in dicts/lists/tuples) by plain numpy arrays."""
    if isinstance(obj, ChumpyPlaceholder):
        state = obj.state
        if "x" in state:
            return np.asarray(chumpy_to_numpy(state["x"], source))
        if "a" in state and "idxs" in state:
            base = np.asarray(chumpy_to_numpy(state["a"], source))
            selected = base.ravel()[np.asarray(state["idxs"]).ravel()]
            shape = state.get("preferred_shape")
            return selected.reshape(shape) if shape is not None else selected
        raise UnsafePickleError(
            f"{source}: chumpy object {obj.chumpy_class} has neither 'x' nor 'a'/'idxs' in its state "
            f"(keys {sorted(state)}); convert the file with chumpy installed"
        )
    if isinstance(obj, dict):
        converted = {k: chumpy_to_numpy(v, source) for k, v in obj.items()}
        return converted if type(obj) is dict else type(obj)(converted)
    if isinstance(obj, list):
        return [chumpy_to_numpy(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(chumpy_to_numpy(v, source) for v in obj)
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class only returns allowed classes (and chumpy placeholders)."""

    def __init__(self, file: Any, source: str, extra_allowed: dict[tuple[str, str], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed = {**_ALLOWED, **(extra_allowed or {})}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_class(module, name)
        raise UnsafePickleError(
            f"{self.source}: refusing to unpickle class {module}.{name} (only numpy arrays, scipy sparse "
            "matrices and chumpy arrays are allowed in a model file)"
        )


def restricted_load(
    path: str | os.PathLike, extra_allowed: dict[tuple[str, str], Any] | Iterable[tuple[str, str]] | None = None
) -> Any:
    """Unpickle `path` (latin1, any protocol) allowing only safe data classes; chumpy -> numpy.

    extra_allowed: more (module, name) pairs to accept, as a dict to the object to return, or an iterable
    of pairs resolved by importing them.
    """
    path = Path(path)
    if extra_allowed is not None and not isinstance(extra_allowed, dict):
        import importlib

        extra_allowed = {(m, n): getattr(importlib.import_module(m), n) for m, n in extra_allowed}
    with open(path, "rb") as fh:
        try:
            obj = RestrictedUnpickler(fh, str(path), extra_allowed).load()
        except UnsafePickleError:
            raise
        except Exception as exc:  # truncated or corrupt file
            raise pickle.UnpicklingError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
    return chumpy_to_numpy(obj, str(path))
