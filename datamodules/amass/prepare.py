"""Prepare a raw AMASS tree into one memory-mappable float32 (N, 63) body-pose array per split.

Sources: `<amass_dir>/<SubDataset>/**/<seq>_poses.npz` (SMPL+H G: body pose = `poses[:, 3:66]`) and
`**/<seq>_stageii.npz` (SMPL-X N: `pose_body`). Each sub-dataset folder is mapped to a split through
the split lists and the alias table (matching ignores case, `_`, `-` and spaces); unknown folders are
reported as unassigned. Output: `<prepared_dir>/<split>/body_pose.npy` and `<prepared_dir>/manifest.json`.

Two passes keep peak memory at about one source file: a scan (checksum, validation, frame count and
frame selection per file) and a write into a preallocated `.npy` under a temporary name that is renamed
only once complete. The manifest is written last (atomically) and is what marks a preparation complete;
a re-run with the same config and unchanged sources does nothing.

Unusable files are skipped with a precise reason in the manifest (not an npz, corrupt or truncated,
pickled object arrays, missing key, wrong shape or dtype); nothing is ever unpickled. Non-finite frames
are dropped from a file (counted per file, per split and in total) or, with nonfinite_frames="skip_file",
make the whole file skipped; the prepared arrays never hold a non-finite value.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pose_prior.io import atomic_path, atomic_write_text, sha256_file
from pose_prior.progress import Progress

MANIFEST_NAME = "manifest.json"
ARRAY_NAME = "body_pose.npy"
MANIFEST_VERSION = 1
FRAME_SELECTIONS = ("all", "vposer", "resample")
NONFINITE_POLICIES = ("drop", "skip_file")  # per run: drop non-finite frames, or skip a file that has any
SOURCE_SUFFIXES = {"_poses.npz": "smplh", "_stageii.npz": "smplx"}
POSE_DIM = 63  # 21 body joints x axis-angle
_SMPLH_WIDTHS = {156: "SMPL+H", 165: "SMPL-X"}  # both hold the body pose at columns 3:66
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # what np.load takes for an npz (a file entry; an empty archive)
_NPY_MAGIC = b"\x93NUMPY"
_PICKLED = "holds pickled object arrays, refused (never loaded with allow_pickle)"


class SkipFile(Exception):
    """A source file that cannot be used; the message is the reason recorded in the manifest."""


@dataclass
class SourceFile:
    """One sequence file found under the AMASS root."""

    rel: str  # posix path relative to amass_dir
    dataset: str  # its top-level sub-dataset folder
    format: str  # smplh (`*_poses.npz`) | smplx (`*_stageii.npz`)
    size: int
    mtime_ns: int


@dataclass
class SplitSummary:
    files: int
    frames: int
    path: Path


@dataclass
class PrepareReport:
    """What a preparation produced (or found already done, `noop=True`)."""

    prepared_dir: Path
    manifest_path: Path
    noop: bool
    splits: dict[str, SplitSummary]
    skipped: list[tuple[str, str]]  # (relative path, reason)
    unassigned: dict[str, int]  # sub-dataset folder -> number of sequence files
    missing_datasets: dict[str, list[str]]  # split -> configured sub-datasets not found
    seconds: float = 0.0
    frames_scanned: int = 0
    warnings: list[str] = field(default_factory=list)
    nonfinite_dropped: int = 0  # selected frames left out because non-finite (all kept files)
    nonfinite_files: int = 0  # kept files that had at least one non-finite frame

    @property
    def frames_per_second(self) -> float:
        return self.frames_scanned / self.seconds if self.seconds > 0 else float("nan")


# ----------------------------------------------------------------------------------------------
# split assignment


def normalize_name(name: str) -> str:
    """Sub-dataset name key: lower case, only letters and digits (MPI_HDM05 == mpihdm05)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def build_split_lookup(splits: Mapping[str, Sequence[str]], aliases: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, str]]:
    """Normalised folder name -> (split, configured name), with every alias of each configured name."""
    groups = [{normalize_name(c), *(normalize_name(a) for a in names)} for c, names in aliases.items()]
    lookup: dict[str, tuple[str, str]] = {}
    for split, names in splits.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split.startswith("."):
            raise ValueError(f"split name '{split}' must be a plain folder name (letters, digits, _ . -)")
        for name in names:
            keys = {normalize_name(name)}
            for group in groups:
                if keys & group:
                    keys |= group
            for key in keys:
                if key in lookup and lookup[key][0] != split:
                    raise ValueError(f"sub-dataset '{name}' (or an alias of it) is listed in split '{split}' and, "
                                     f"as '{lookup[key][1]}', in split '{lookup[key][0]}'")
                lookup[key] = (split, name)
    return lookup


def discover_sources(amass_dir: str | Path) -> list[SourceFile]:
    """Every `*_poses.npz` / `*_stageii.npz` under the sub-dataset folders of `amass_dir`, sorted."""
    root = Path(amass_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"AMASS directory not found: {root}")
    found: list[SourceFile] = []
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in ds_dir.rglob("*.npz"):
            fmt = next((f for suffix, f in SOURCE_SUFFIXES.items() if path.name.endswith(suffix)), None)
            rel = path.relative_to(root)
            if fmt is None or any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            st = path.stat()
            found.append(SourceFile(rel.as_posix(), ds_dir.name, fmt, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda s: s.rel)
    return found


# ----------------------------------------------------------------------------------------------
# reading and frame selection


def _sniff(head: bytes) -> None:
    """SkipFile unless `head` (the first bytes of a file) starts like a zip archive, i.e. an npz.

    Checked before np.load: on anything that is not a zip or .npy, np.load falls back to unpickling,
    and its error would call a plain text file "pickled data" and advise loading it with allow_pickle.
    """
    if head.startswith(_ZIP_MAGICS):
        return
    if not head:
        raise SkipFile("not an npz archive (empty file)")
    if head.startswith(_NPY_MAGIC):
        raise SkipFile("not an npz archive (a single .npy array)")
    if head.startswith(b"version https://git-lfs"):
        raise SkipFile("not an npz archive (a Git LFS pointer file: the data was never fetched, run `git lfs pull`)")
    raise SkipFile(f"not an npz archive (starts with {head[:16]!r})")


def _member_dtype(npz: np.lib.npyio.NpzFile, key: str) -> Optional[np.dtype]:
    """dtype from the .npy header of member `key`, without reading its data; None when it cannot be read here."""
    names = npz.zip.namelist()
    name = f"{key}.npy" if f"{key}.npy" in names else key
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with npz.zip.open(name) as fh:
            reader = readers.get(np.lib.format.read_magic(fh))
            return None if reader is None else np.dtype(reader(fh)[2])
    except Exception:  # corrupt or truncated: reported by the actual read below, with its own reason
        return None


def _error_text(exc: BaseException) -> str:
    """An exception's message for a skip reason, minus numpy's advice to load pickles."""
    text = str(exc)
    return _PICKLED if "pickle" in text.lower() else text


def read_body_pose(source: bytes | Path, fmt: str) -> tuple[np.ndarray, Optional[float]]:
    """Body pose (T, 63), every frame (finite or not), and frame rate (or None) of one AMASS file.

    `source` is the file's bytes or its path. SkipFile (message = the reason) if the file is not an npz,
    is corrupt or truncated, holds pickled objects in the pose key, lacks the key or has the wrong shape.
    Nothing is ever unpickled.
    """
    try:
        if isinstance(source, bytes):
            head = source[:64]
        else:
            with open(source, "rb") as fh:
                head = fh.read(64)
    except OSError as exc:
        raise SkipFile(f"cannot read the file: {exc}") from None
    _sniff(head)
    try:
        npz = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise SkipFile(f"not a readable npz archive (corrupt or truncated): {_error_text(exc)}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise SkipFile("not an npz archive (a single .npy array)")
    with npz:
        key = "poses" if fmt == "smplh" else "pose_body"
        if key not in npz.files:
            raise SkipFile(f"missing key '{key}' (keys: {', '.join(sorted(npz.files))})")
        dtype = _member_dtype(npz, key)
        if dtype is not None and dtype.hasobject:
            raise SkipFile(f"key '{key}' {_PICKLED}")
        try:
            arr = npz[key]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error, KeyError) as exc:
            if "pickle" in str(exc).lower():
                raise SkipFile(f"key '{key}' {_PICKLED}") from None
            raise SkipFile(f"cannot read key '{key}' (corrupt or truncated): {exc}") from None
        if arr.dtype.kind not in "fiu":
            raise SkipFile(f"key '{key}' has dtype {arr.dtype}; expected a float array")
        if fmt == "smplh":
            if arr.ndim != 2 or arr.shape[1] not in _SMPLH_WIDTHS:
                raise SkipFile(f"key 'poses' has shape {arr.shape}; expected (T, 156) (SMPL+H) or (T, 165) (SMPL-X)")
            body = arr[:, 3:66]
        else:
            if arr.ndim != 2 or arr.shape[1] != POSE_DIM:
                raise SkipFile(f"key 'pose_body' has shape {arr.shape}; expected (T, 63)")
            body = arr
        if body.shape[0] == 0:
            raise SkipFile(f"key '{key}' has no frames")
        fps = None
        for fps_key in ("mocap_framerate", "mocap_frame_rate"):
            if fps_key in npz.files:
                with contextlib.suppress(Exception):
                    value = float(np.asarray(npz[fps_key]).reshape(-1)[0])
                    fps = value if np.isfinite(value) and value > 0 else None
                break
        return body, fps


def finite_frames(body: np.ndarray) -> np.ndarray:
    """(T,) bool: frames whose 63 values are finite as stored, i.e. as float32 (1e300 is finite in float64, inf in float32)."""
    with np.errstate(over="ignore"):
        return np.isfinite(np.asarray(body, dtype=np.float32)).all(axis=1)


def file_seed(seed: int, rel_path: str) -> int:
    """Deterministic per-file seed from the global seed and the file's path relative to the AMASS root."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{rel_path}".encode()).digest()[:8], "little")


def select_frames(
    n_frames: int,
    frame_selection: str = "all",
    *,
    keep_fraction: float = 0.3,
    trim_fraction: float = 0.1,
    target_fps: Optional[float] = None,
    source_fps: Optional[float] = None,
    seed: int = 0,
    rel_path: str = "",
) -> np.ndarray:
    """Sorted frame ids (int64) kept from a sequence of `n_frames` frames.

    all: every frame. vposer: int(keep * (1 - 2 trim) * N) ids drawn without replacement from
    [int(trim N), int((1 - trim) N)), seeded by (seed, rel_path). resample: nearest frames at target_fps.
    """
    if frame_selection == "all":
        return np.arange(n_frames, dtype=np.int64)
    if frame_selection == "vposer":
        lo, hi = int(trim_fraction * n_frames), int((1.0 - trim_fraction) * n_frames)
        count = min(int(keep_fraction * (1.0 - 2.0 * trim_fraction) * n_frames), max(hi - lo, 0))
        rng = np.random.default_rng(file_seed(seed, rel_path))
        return np.sort(rng.choice(np.arange(lo, hi, dtype=np.int64), size=count, replace=False))
    if frame_selection == "resample":
        if target_fps is None or not target_fps > 0:
            raise ValueError(f"frame_selection=resample needs a positive target_fps (got {target_fps})")
        if source_fps is None:
            raise SkipFile("no mocap frame rate (keys 'mocap_framerate' / 'mocap_frame_rate'), needed to resample")
        step = source_fps / target_fps
        count = int(np.floor((n_frames - 1) / step + 1e-9)) + 1
        return np.minimum(np.floor(np.arange(count) * step + 0.5).astype(np.int64), n_frames - 1)
    raise ValueError(f"unknown frame_selection '{frame_selection}'; valid: {', '.join(FRAME_SELECTIONS)}")


@dataclass
class FrameChoice:
    """The rows kept from one file and what non-finite frames cost it."""

    frames: np.ndarray  # sorted source frame ids (int64), all finite
    nonfinite: int  # non-finite frames in the source
    dropped: int  # selected frames removed because they were non-finite


def choose_frames(body: np.ndarray, fps: Optional[float], frame_selection: str = "all",
                  nonfinite_frames: str = "drop", *, key: str = "poses", **selection: Any) -> FrameChoice:
    """Frame selection, then non-finite frames removed; SkipFile when the policy or the data leave nothing usable.

    Order: select_frames runs on the file's full timeline (every frame, finite or not), then the selected
    frames that are non-finite are dropped. So the selection depends only on (frame count, frame rate,
    seed, path): resampling keeps true timestamps, the vposer trim is measured on the recording, and a file
    with one bad frame keeps exactly the clean file's selection minus that frame (nothing shifts).
    `nonfinite_frames="skip_file"` skips a file with any non-finite frame instead; a file whose frames are
    all non-finite is skipped either way.
    """
    if nonfinite_frames not in NONFINITE_POLICIES:
        raise ValueError(f"unknown nonfinite_frames '{nonfinite_frames}'; valid: {', '.join(NONFINITE_POLICIES)}")
    finite = finite_frames(body)
    n_frames, n_bad = body.shape[0], int((~finite).sum())
    if n_bad == n_frames:
        raise SkipFile(f"key '{key}' has non-finite body-pose values in all {n_frames} frames")
    if n_bad and nonfinite_frames == "skip_file":
        raise SkipFile(f"key '{key}' has non-finite body-pose values in {n_bad} of {n_frames} frames "
                       "(nonfinite_frames=skip_file)")
    frames = select_frames(n_frames, frame_selection, source_fps=fps, **selection)
    keep = finite[frames]
    return FrameChoice(frames[keep], n_bad, int((~keep).sum()))


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def load_selected_rows(path: Path, fmt: str, frames: np.ndarray, expected_frames: int) -> np.ndarray:
    """The kept body-pose rows (K, 63) float32 of one file (pass 2; re-checks the frame count and finiteness)."""
    body, _ = read_body_pose(path, fmt)  # reads only the pose member of the archive
    if body.shape[0] != expected_frames:
        raise RuntimeError(f"{path}: changed during preparation ({body.shape[0]} frames, scanned {expected_frames}); "
                           "re-run the preparation")
    with np.errstate(over="ignore"):
        rows = np.ascontiguousarray(body[frames], dtype=np.float32)
    if not np.isfinite(rows).all():  # the scan kept only finite frames: the file changed in between
        raise RuntimeError(f"{path}: changed during preparation (non-finite values in scanned-finite frames); "
                           "re-run the preparation")
    return rows


# ----------------------------------------------------------------------------------------------
# manifest and up-to-date check


def _prepare_config(amass_dir: Path, splits: Mapping[str, Sequence[str]], aliases: Mapping[str, Sequence[str]],
                    frame_selection: str, keep: float, trim: float, target_fps: Optional[float], seed: int,
                    nonfinite_frames: str) -> dict[str, Any]:
    config = {
        "amass_dir": str(amass_dir.resolve()),
        "splits": {k: list(v) for k, v in splits.items()},
        "aliases": {k: list(v) for k, v in aliases.items()},
        "frame_selection": frame_selection,
        "vposer_keep_fraction": float(keep),
        "vposer_trim_fraction": float(trim),
        "target_fps": None if target_fps is None else float(target_fps),
        "seed": int(seed),
        "nonfinite_frames": nonfinite_frames,
    }
    return json.loads(json.dumps(config))  # the form it has after a round trip through the manifest


def read_manifest(prepared_dir: str | Path) -> Optional[dict[str, Any]]:
    """The manifest of a complete preparation, or None."""
    try:
        manifest = json.loads((Path(prepared_dir) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("complete") is True else None


def array_shape(path: Path) -> Optional[tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) from a .npy header without reading the data, or None if unreadable."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
        return tuple(shape), dtype
    except (OSError, ValueError):
        return None


def _is_up_to_date(old: dict[str, Any], config: dict[str, Any], assigned: list[SourceFile],
                   unassigned: dict[str, int], amass_dir: Path, prepared_dir: Path, verify_checksums: bool) -> bool:
    if old.get("format_version") != MANIFEST_VERSION or old.get("config") != config:
        return False
    if old.get("unassigned") != unassigned or set(old.get("splits", {})) != set(config["splits"]):
        return False
    entries = {e["path"]: e for e in old.get("files", []) + old.get("skipped", [])}
    if set(entries) != {s.rel for s in assigned}:
        return False
    for src in assigned:
        entry = entries[src.rel]
        if verify_checksums or (entry.get("size"), entry.get("mtime_ns")) != (src.size, src.mtime_ns):
            if sha256_file(amass_dir / src.rel) != entry.get("sha256"):
                return False
    for info in old["splits"].values():
        found = array_shape(prepared_dir / info["array"])
        if found is None or found[0] != (info["frames"], POSE_DIM) or found[1] != np.float32:
            return False
    return True


@contextlib.contextmanager
def _exclusive_lock(prepared_dir: Path) -> Iterator[None]:
    """One preparation at a time per prepared_dir (e.g. one local-rank-0 process per node on a shared disk)."""
    try:
        prepared_dir.mkdir(parents=True, exist_ok=True)
        fh = open(prepared_dir / ".prepare.lock", "a")  # "a": taking the lock does not touch the file
    except OSError:  # e.g. a read-only copy of a finished preparation: check it without a lock
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _report_from_manifest(manifest: dict[str, Any], prepared_dir: Path, noop: bool, seconds: float,
                          frames_scanned: int, warnings: list[str]) -> PrepareReport:
    return PrepareReport(
        prepared_dir=prepared_dir,
        manifest_path=prepared_dir / MANIFEST_NAME,
        noop=noop,
        splits={k: SplitSummary(v["files"], v["frames"], prepared_dir / v["array"]) for k, v in manifest["splits"].items()},
        skipped=[(e["path"], e["reason"]) for e in manifest["skipped"]],
        unassigned=dict(manifest["unassigned"]),
        missing_datasets={k: list(v) for k, v in manifest["missing_datasets"].items()},
        seconds=seconds,
        frames_scanned=frames_scanned,
        warnings=warnings,
        nonfinite_dropped=int(manifest.get("nonfinite", {}).get("frames_dropped", 0)),
        nonfinite_files=int(manifest.get("nonfinite", {}).get("files", 0)),
    )


# ----------------------------------------------------------------------------------------------
# the preparation


def _write_split(path: Path, entries: list[dict[str, Any]], selections: dict[str, np.ndarray],
                 amass_dir: Path, total: int, bar: Progress) -> None:
    """Fill a preallocated (total, 63) float32 .npy under a temporary name, then fsync + rename it to `path`."""
    row_bytes = POSE_DIM * np.dtype(np.float32).itemsize
    with atomic_path(path, suffix=".npy") as tmp:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, POSE_DIM))
        offset = header.offset
        del header  # rows go in with positional writes: page cache, not this process's resident memory
        with open(tmp, "r+b") as fh:
            for entry in entries:
                rows = load_selected_rows(amass_dir / entry["path"], entry["format"], selections[entry["path"]],
                                          entry["frames_source"])
                if rows.shape[0] != entry["frames_kept"]:
                    raise RuntimeError(f"{entry['path']}: {rows.shape[0]} rows selected, scanned {entry['frames_kept']}")
                os.pwrite(fh.fileno(), rows.tobytes(), offset + entry["row_offset"] * row_bytes)
                bar.update()


def _remove_previous(prepared_dir: Path, old: Optional[dict[str, Any]], splits: Sequence[str]) -> None:
    """Drop the old manifest first (nothing looks complete from here on), then old arrays and stale temp files."""
    (prepared_dir / MANIFEST_NAME).unlink(missing_ok=True)
    dirs = set(splits) | set((old or {}).get("splits", {}))
    for split in dirs:
        split_dir = prepared_dir / split
        (split_dir / ARRAY_NAME).unlink(missing_ok=True)
        for stale in split_dir.glob(f".{ARRAY_NAME}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)


def prepare_amass(
    amass_dir: str | Path,
    prepared_dir: str | Path,
    splits: Mapping[str, Sequence[str]],
    aliases: Mapping[str, Sequence[str]],
    frame_selection: str = "all",
    vposer_keep_fraction: float = 0.3,
    vposer_trim_fraction: float = 0.1,
    target_fps: Optional[float] = None,
    seed: int = 0,
    verify_checksums: bool = False,
    progress: bool = False,
    nonfinite_frames: str = "drop",
) -> PrepareReport:
    """Prepare `amass_dir` into `<prepared_dir>/<split>/body_pose.npy` + `manifest.json`; no-op if up to date.

    Unchanged sources are recognised by size + mtime (re-hashed when those differ, or always with
    verify_checksums=True). Unusable files are skipped and listed with the reason in the manifest.
    Non-finite frames (`nonfinite_frames`): "drop" keeps a file's finite frames (selection first, then
    dropping: see choose_frames) and counts the dropped ones per file, per split and in total; "skip_file"
    skips any file with a non-finite frame. The prepared arrays never hold a non-finite value.
    `progress`: files done, rate and ETA on stderr every few seconds (off with POSE_PRIOR_PROGRESS=0).
    """
    start = time.perf_counter()
    amass_dir, prepared_dir = Path(amass_dir), Path(prepared_dir)
    if frame_selection not in FRAME_SELECTIONS:
        raise ValueError(f"unknown frame_selection '{frame_selection}'; valid: {', '.join(FRAME_SELECTIONS)}")
    if frame_selection == "resample" and (target_fps is None or not target_fps > 0):
        raise ValueError(f"frame_selection=resample needs a positive target_fps (got {target_fps})")
    if nonfinite_frames not in NONFINITE_POLICIES:
        raise ValueError(f"unknown nonfinite_frames '{nonfinite_frames}'; valid: {', '.join(NONFINITE_POLICIES)}")
    if not (0.0 < vposer_keep_fraction <= 1.0 and 0.0 <= vposer_trim_fraction < 0.5):
        raise ValueError(f"vposer_keep_fraction must be in (0, 1] and vposer_trim_fraction in [0, 0.5) "
                         f"(got {vposer_keep_fraction}, {vposer_trim_fraction})")
    lookup = build_split_lookup(splits, aliases)
    config = _prepare_config(amass_dir, splits, aliases, frame_selection, vposer_keep_fraction,
                             vposer_trim_fraction, target_fps, seed, nonfinite_frames)

    sources = discover_sources(amass_dir)
    assigned = [s for s in sources if normalize_name(s.dataset) in lookup]
    unassigned: dict[str, int] = {}
    for s in sources:
        if normalize_name(s.dataset) not in lookup:
            unassigned[s.dataset] = unassigned.get(s.dataset, 0) + 1
    folders_of: dict[str, list[str]] = {}
    for folder in sorted({s.dataset for s in assigned}):
        folders_of.setdefault(lookup[normalize_name(folder)][1], []).append(folder)
    warnings = [f"sub-dataset '{name}' found in several folders: {', '.join(f)} (all are used)"
                for name, f in folders_of.items() if len(f) > 1]
    missing = {split: [n for n in names if n not in folders_of] for split, names in splits.items()}

    with _exclusive_lock(prepared_dir):
        old = read_manifest(prepared_dir)
        if old is not None and _is_up_to_date(old, config, assigned, unassigned, amass_dir, prepared_dir, verify_checksums):
            return _report_from_manifest(old, prepared_dir, True, time.perf_counter() - start, 0, warnings)

        # pass 1: checksum, validate, count and select frames, one file at a time
        per_split: dict[str, list[dict[str, Any]]] = {split: [] for split in splits}
        selections: dict[str, np.ndarray] = {}
        skipped: list[dict[str, Any]] = []
        frames_scanned = 0
        with Progress("AMASS preparation, scanning", len(assigned), unit="files", enabled=progress) as bar:
            for src in assigned:
                split = lookup[normalize_name(src.dataset)][0]
                raw = (amass_dir / src.rel).read_bytes()
                common = {"path": src.rel, "dataset": src.dataset, "split": split, "format": src.format,
                          "sha256": sha256_bytes(raw), "size": src.size, "mtime_ns": src.mtime_ns}
                try:
                    body, fps = read_body_pose(raw, src.format)
                    choice = choose_frames(body, fps, frame_selection, nonfinite_frames,
                                           key="poses" if src.format == "smplh" else "pose_body",
                                           keep_fraction=vposer_keep_fraction, trim_fraction=vposer_trim_fraction,
                                           target_fps=target_fps, seed=seed, rel_path=src.rel)
                except SkipFile as exc:
                    skipped.append({**common, "reason": str(exc)})
                    continue
                finally:
                    del raw
                    bar.update()  # skipped files count as done too
                frames_scanned += body.shape[0]
                rows = per_split[split]
                offset = rows[-1]["row_offset"] + rows[-1]["frames_kept"] if rows else 0
                rows.append({**common, "framerate": fps, "frames_source": int(body.shape[0]),
                             "frames_kept": int(choice.frames.shape[0]), "row_offset": int(offset),
                             "frames_nonfinite": choice.nonfinite, "frames_dropped_nonfinite": choice.dropped})
                selections[src.rel] = choice.frames
                del body

        # pass 2: write each split under a temporary name, rename when complete; the manifest goes last
        _remove_previous(prepared_dir, old, list(splits))
        split_info: dict[str, Any] = {}
        kept_files = [e for entries in per_split.values() for e in entries]
        with Progress("AMASS preparation, writing", len(kept_files), unit="files", enabled=progress) as bar:
            for split, entries in per_split.items():
                total = sum(e["frames_kept"] for e in entries)
                _write_split(prepared_dir / split / ARRAY_NAME, entries, selections, amass_dir, total, bar)
                split_info[split] = {"array": f"{split}/{ARRAY_NAME}", "files": len(entries), "frames": int(total),
                                     "frames_source": int(sum(e["frames_source"] for e in entries)),
                                     "frames_dropped_nonfinite": int(sum(e["frames_dropped_nonfinite"] for e in entries)),
                                     "dtype": "float32", "shape": [int(total), POSE_DIM]}
        manifest = {
            "format_version": MANIFEST_VERSION,
            "complete": True,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config,
            "splits": split_info,
            "files": kept_files,
            "skipped": skipped,
            "nonfinite": {"policy": nonfinite_frames,
                          "files": sum(1 for e in kept_files if e["frames_nonfinite"]),
                          "frames_source": int(sum(e["frames_nonfinite"] for e in kept_files)),
                          "frames_dropped": int(sum(e["frames_dropped_nonfinite"] for e in kept_files))},
            "unassigned": unassigned,
            "missing_datasets": missing,
            "warnings": warnings,
        }
        atomic_write_text(prepared_dir / MANIFEST_NAME, json.dumps(manifest, indent=1))
    return _report_from_manifest(manifest, prepared_dir, False, time.perf_counter() - start, frames_scanned, warnings)


# ----------------------------------------------------------------------------------------------
# entry points with plain arguments (shared by the CLI runner and the DataModule)


def ensure_prepared(
    amass_dir: Optional[str | Path],
    prepared_dir: str | Path,
    splits: Mapping[str, Sequence[str]],
    aliases: Mapping[str, Sequence[str]],
    demo_dir: Optional[str | Path] = None,
    demo: Optional[dict[str, Any]] = None,
    **prepare_kwargs: Any,
) -> PrepareReport:
    """prepare_amass on `amass_dir`, or (amass_dir None) on the synthetic demo tree, written first if needed."""
    if amass_dir is None:
        if demo_dir is None:
            raise ValueError("no AMASS directory given (data.amass_dir) and no demo_dir for the synthetic tree")
        from datamodules.amass.demo import write_demo_amass

        write_demo_amass(demo_dir, **(demo or {}))
        amass_dir = demo_dir
    return prepare_amass(amass_dir, prepared_dir, splits, aliases, **prepare_kwargs)


def prepare_kwargs_from_config(cfg: Any) -> dict[str, Any]:
    """ensure_prepared's arguments from a validated config (sections `data` and `demo`), as plain values."""
    from datamodules.amass.demo import demo_kwargs

    data = cfg.data
    return {
        "amass_dir": None if data.amass_dir is None else str(data.amass_dir),
        "prepared_dir": str(data.prepared_dir),
        "splits": {str(k): [str(n) for n in v] for k, v in data.splits.items()},
        "aliases": {str(k): [str(n) for n in v] for k, v in data.aliases.items()},
        "demo_dir": str(data.demo_dir),
        "demo": demo_kwargs(cfg.demo),
        "frame_selection": str(data.frame_selection),
        "vposer_keep_fraction": float(data.vposer_keep_fraction),
        "vposer_trim_fraction": float(data.vposer_trim_fraction),
        "target_fps": None if data.target_fps is None else float(data.target_fps),
        "seed": int(data.seed),
        "verify_checksums": bool(getattr(data, "verify_checksums", False)),
        # getattr: works before and after the schema gains the field
        "nonfinite_frames": str(getattr(data, "nonfinite_frames", "drop")),
        "progress": True,  # preparation on demand (DataModule) can take minutes: say how far it is
    }


def print_report(report: PrepareReport, print_fn: Optional[Callable[..., None]] = None) -> None:
    """A short rich table: per split files and frames; skipped and unassigned counts."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    state = "already up to date" if report.noop else f"prepared in {report.seconds:.1f} s"
    table = Table(title=f"AMASS body poses ({state}): {report.prepared_dir}")
    table.add_column("split")
    table.add_column("files", justify="right")
    table.add_column("frames", justify="right")
    table.add_column("missing sub-datasets")
    for split, s in report.splits.items():
        table.add_row(split, str(s.files), f"{s.frames:,}", ", ".join(report.missing_datasets.get(split, [])))
    (print_fn or console.print)(table)
    if report.skipped:
        console.print(f"[yellow]{len(report.skipped)} file(s) skipped[/] (reasons in {report.manifest_path}):")
        for path, reason in report.skipped[:10]:
            console.print(f"  {path}: {reason}")
    if report.nonfinite_dropped:
        console.print(f"[yellow]{report.nonfinite_dropped:,} non-finite frame(s) dropped[/] "
                      f"({report.nonfinite_files} file(s) had non-finite frames; per file in {report.manifest_path})")
    if report.unassigned:
        console.print("[yellow]sub-datasets in no split[/]: "
                      + ", ".join(f"{k} ({v} files)" for k, v in report.unassigned.items()))
    for warning in report.warnings:
        console.print(f"[yellow]warning[/]: {warning}")


def run_prepare_amass(cfg: Any) -> PrepareReport:
    """`make prepare-amass`: prepare cfg.data.amass_dir (or the synthetic demo tree when it is null)."""
    report = ensure_prepared(**prepare_kwargs_from_config(cfg))
    print_report(report)
    return report
