"""The project's one restricted unpickler: for chumpy-era model files and for Lightning 1.x checkpoints.

Two kinds of file need it:
- SMPL / SMPL-H .pkl and SMPLify's gmm_08.pkl (`restricted_load`): numpy arrays, scipy.sparse CSC/CSR
  matrices, plain containers and chumpy arrays. Chumpy objects (`chumpy.ch.Ch` with state {'x': array},
  `chumpy.reordering.*` selections with state {'a', 'idxs', 'preferred_shape'}) become placeholders that are
  turned into plain numpy arrays without importing chumpy.
- VPoser's V02_05 `.ckpt` (`restricted_pickle_module`, given to `torch.load(pickle_module=...)`): tensors
  (torch's rebuild functions, allowed by name in `torch_tensor_globals`), numpy arrays, containers, and
  Lightning/omegaconf classes pickled outside `state_dict`, which become inert placeholders.

It is hand-written rather than torch's `weights_only=True` loader with `safe_globals` because that loader
only lets SETITEM(S) target exact dict/OrderedDict/Counter instances, so a placeholder for a pickled dict
subclass (Lightning's `AttributeDict` hyperparameters) cannot absorb its items; and it cannot map a whole
package to placeholders without listing every class name in advance.

Every class neither allowed by name nor in a placeholder package is refused with an `UnsafePickleError`
naming the file and the class, before anything from it is called.
"""

from __future__ import annotations

import codecs
import copyreg
import functools
import os
import pickle
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

_NDARRAY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, any numpy version
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]  # numpy's multiarray.scalar

Allowed = Mapping[tuple[str, str], Any]  # (module, name) as written in the pickle -> the object to return

# Data classes any of our pickles may hold. numpy moved `core` to `_core` in 2.0 and scipy.sparse its
# matrix modules to private names; both spellings map to the same objects.
DATA_GLOBALS: dict[tuple[str, str], Any] = {
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
    DATA_GLOBALS[(_core, "_reconstruct")] = _NDARRAY_RECONSTRUCT
    DATA_GLOBALS[(_core, "scalar")] = _NUMPY_SCALAR
for _mod in ("scipy.sparse.csc", "scipy.sparse._csc"):
    DATA_GLOBALS[(_mod, "csc_matrix")] = scipy.sparse.csc_matrix
for _mod in ("scipy.sparse.csr", "scipy.sparse._csr"):
    DATA_GLOBALS[(_mod, "csr_matrix")] = scipy.sparse.csr_matrix

CHUMPY_PACKAGES = ("chumpy",)

# Names torch.save writes for tensors; listed here instead of read from torch's private allow-list.
_TORCH_DTYPES = (
    "float64", "float32", "float16", "bfloat16", "complex128", "complex64",
    "int64", "int32", "int16", "int8", "uint8", "bool",
)
_TORCH_STORAGES = (
    "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage", "ComplexDoubleStorage",
    "ComplexFloatStorage", "LongStorage", "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
)
_TORCH_REBUILDS = (
    "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
    "_rebuild_parameter_with_state",
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a class outside the allowed set."""


class Placeholder:
    """Stands in for a class of a placeholder package: records what the pickle gives it and runs nothing.

    It accepts constructor arguments (REDUCE / NEWOBJ), state (BUILD), items (SETITEM(S), for pickled dict
    subclasses) and list items (APPEND(S)). It is a plain object, not a dict subclass, so protocol-0/1
    pickles' `copyreg._reconstructor(cls, object, None)` can create it; instances hash by identity
    because Lightning 1.x may use pickled objects as dict keys.
    """

    pickled_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items, obj.list_items = args, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): already recorded
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, item: Any) -> None:
        self.list_items.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        self.list_items.extend(items)

    def __repr__(self) -> str:
        return f"<placeholder for {self.pickled_class}>"


@functools.lru_cache(maxsize=None)
def placeholder_class(module: str, name: str) -> type[Placeholder]:
    """One Placeholder subclass per pickled class, so classes used as dict keys stay distinct."""
    return type(name, (Placeholder,), {"pickled_class": f"{module}.{name}", "__module__": __name__})


def torch_tensor_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for what torch.save writes around tensors (storages, dtypes, rebuilds)."""
    import collections

    import torch

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch.storage", "UntypedStorage"): torch.UntypedStorage,
        ("torch.storage", "TypedStorage"): torch.TypedStorage,
        # tensor subclasses / tensors with attributes; `func` and `new_type` must themselves be allowed
        ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    }
    allowed.update({("torch", n): getattr(torch, n) for n in _TORCH_DTYPES + _TORCH_STORAGES})
    allowed.update({("torch._utils", n): getattr(torch._utils, n) for n in _TORCH_REBUILDS})
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class returns only allowed objects and placeholder classes.

    allowed: DATA_GLOBALS plus `extra_allowed`. placeholder_packages: top-level packages whose classes
    become `placeholder_class(module, name)` without being imported. Extra keyword arguments (encoding,
    errors, ...) go to pickle.Unpickler; encoding defaults to latin1 for Python 2 pickles.
    """

    def __init__(
        self,
        file: Any,
        source: str = "<pickle>",
        extra_allowed: Allowed | None = None,
        placeholder_packages: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("encoding", "latin1")
        super().__init__(file, **kwargs)
        self.source = source
        self.allowed = {**DATA_GLOBALS, **(extra_allowed or {})}
        self.placeholder_packages = tuple(placeholder_packages)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module.split(".")[0] in self.placeholder_packages:
            return placeholder_class(module, name)
        placeholders = f", placeholders for {'/'.join(self.placeholder_packages)}" if self.placeholder_packages else ""
        raise UnsafePickleError(
            f"{self.source}: refusing to unpickle class {module}.{name} (only numpy arrays, scipy sparse matrices, "
            f"plain containers and listed data classes are allowed{placeholders})"
        )


def restricted_pickle_module(
    source: str, extra_allowed: Allowed | None = None, placeholder_packages: Iterable[str] = ()
) -> types.ModuleType:
    """A module-like object with `Unpickler`, `load` and `UnpicklingError` for `torch.load(pickle_module=...)`.

    torch subclasses `Unpickler` (to map storages and set persistent_load) and calls `load(file, **kwargs)`
    for legacy files, so both are bound to this policy and `source` (the file named in errors).
    """
    policy = {"source": source, "extra_allowed": extra_allowed, "placeholder_packages": tuple(placeholder_packages)}

    class BoundUnpickler(RestrictedUnpickler):
        def __init__(self, file: Any, **kwargs: Any) -> None:
            super().__init__(file, **policy, **kwargs)

    module = types.ModuleType(f"{__name__}.restricted")  # torch reads pickle_module.__name__
    module.Unpickler = BoundUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: BoundUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    return module


def _chumpy_state(obj: Placeholder) -> dict:
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
        state = state[0] or {}
    return dict(state) if isinstance(state, dict) else {"x": state}


def chumpy_to_numpy(obj: Any, source: str = "<pickle>") -> Any:
    """Replace chumpy placeholders (recursively in dicts/lists/tuples) by plain numpy arrays."""
    if isinstance(obj, Placeholder) and obj.pickled_class.split(".")[0] in CHUMPY_PACKAGES:
        state = _chumpy_state(obj)
        if "x" in state:
            return np.asarray(chumpy_to_numpy(state["x"], source))
        if "a" in state and "idxs" in state:
            base = np.asarray(chumpy_to_numpy(state["a"], source))
            selected = base.ravel()[np.asarray(state["idxs"]).ravel()]
            shape = state.get("preferred_shape")
            return selected.reshape(shape) if shape is not None else selected
        raise UnsafePickleError(
            f"{source}: chumpy object {obj.pickled_class} has neither 'x' nor 'a'/'idxs' in its state "
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


def restricted_load(
    path: str | os.PathLike, extra_allowed: Allowed | Iterable[tuple[str, str]] | None = None
) -> Any:
    """Unpickle a chumpy-era model file `path` (latin1, any protocol) allowing only data classes; chumpy -> numpy.

    extra_allowed: more (module, name) pairs to accept, as a dict to the object to return, or an iterable
    of pairs resolved by importing them.
    """
    path = Path(path)
    if extra_allowed is not None and not isinstance(extra_allowed, Mapping):
        import importlib

        extra_allowed = {(m, n): getattr(importlib.import_module(m), n) for m, n in extra_allowed}
    with open(path, "rb") as fh:
        try:
            obj = RestrictedUnpickler(fh, str(path), extra_allowed, CHUMPY_PACKAGES).load()
        except UnsafePickleError:
            raise
        except Exception as exc:  # truncated or corrupt file
            raise pickle.UnpicklingError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from exc
    return chumpy_to_numpy(obj, str(path))


def restricted_load_dict(path: str | os.PathLike, what: str) -> dict:
    """`restricted_load` for model files that must hold a dict: anything else is a ValueError naming `what`."""
    loaded = restricted_load(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a pickled dict of {what}, got {type(loaded).__name__}")
    return loaded
