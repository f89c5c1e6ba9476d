"""Atomic file writes: a reader never sees a half-written file under the final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600; the finished file gets what a plain open() would: 0666 less the umask
        os.chmod(tmp_path, 0o666 & ~_umask())
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], Any], suffix: str = "") -> None:
    """Call `writer(tmp_path)` and move the result to `path` atomically."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


def atomic_savez(path: str | os.PathLike, compressed: bool = False, **arrays: Any) -> None:
    """`np.savez` (or `savez_compressed`) to `path` atomically, exactly that name (no ".npz" appended)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file handle: numpy must not append ".npz" to the temporary name
            save(fh, **arrays)

    atomic_save(path, write)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_tensors_file(path: str | os.PathLike, what: str, hint: str = "") -> Any:
    """`torch.load(path, weights_only=True)` on the CPU, with errors that name the file and what it should be.

    A directory or a missing file raises FileNotFoundError; a file that is not a weights-only torch file
    raises ValueError naming it, `what` it should be and `hint` (never an invitation to load it unsafely)."""
    import torch

    path = os.fspath(path)
    if os.path.isdir(path):
        raise FileNotFoundError(f"{path}: is a directory, not {what}{'; ' + hint if hint else ''}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        first = str(err).split("\n")[0]  # torch's first line; its advice to pass weights_only=False is dropped
        if "weights_only" in first or "Weights only load failed" in first:
            reason = "it holds objects other than tensors and plain values (refused without running them)"
        else:
            reason = f"not a file torch.save wrote ({type(err).__name__}: {first})"
        raise ValueError(f"{path}: not {what}: {reason}.{' ' + hint if hint else ''}") from None


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-inf) replaced by None, tensors and numpy values as lists
    and numbers: what a strict JSON parser accepts."""
    import math

    import numpy as np

    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # tensors, numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    """Write `value` as strict JSON (non-finite numbers become null; `allow_nan=False`), atomically."""
    import json

    atomic_write_text(path, json.dumps(strict_json(value), indent=indent, allow_nan=False) + "\n")
