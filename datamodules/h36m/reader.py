"""Read SPIN's H3.6M Protocol-2 file and the 2D keypoints to fit (the joint regressor: pose_prior.body_model.h36m_regressor).

SPIN's `h36m_valid_protocol2.npz` holds exactly `imgname` (N,), `center` (N, 2), `scale` (N,) and
`S` (N, 24, 4) (metres, camera coordinates, root-centred, column 3 = 1 for the 17 filled joints).
It has no 2D keypoints: they come from a `part` (N, 24, 3) / `openpose` (N, 25, 3) array in the
same file, or from a separate npz (same N and order, or keyed by `imgname`). See docs/formats.md#h36m-protocol-2-npz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pose_prior.body_model.keypoints import H36M17_TO_SPIN24
from pose_prior.io import atomic_savez

P2_KEYS = ("imgname", "center", "scale", "S")
KEYPOINT_KEYS = {"part": ("spin24", 24), "openpose": ("openpose25", 25)}
UNUSED_SPIN24_ROWS = sorted(set(range(24)) - set(H36M17_TO_SPIN24))  # [13, 15, 19, 20, 21, 22, 23]

HOW_TO_MAKE_KEYPOINTS = (
    "SPIN's published P2 file holds only imgname, center, scale and S. Provide the 2D keypoints to fit as "
    "an npz with `part` (N, 24, 3) pixels + confidence in SPIN-24 order (or `openpose` (N, 25, 3)), "
    "same order as the P2 file or with an `imgname` array to match by name. From raw H3.6M "
    "(MyPoseFeatures/D2_Positions/<seq>.cdf, camera 60457274, every 5th frame): "
    "part[global_idx, :2] = D2[h36m_idx], part[global_idx, 2] = 1 "
    "(pose_prior.body_model.keypoints.h36m32_to_spin24, then datamodules.h36m.reader.write_keypoint_file)."
)


class H36MFileError(ValueError):
    """An H3.6M evaluation file does not have the expected layout."""


@dataclass
class H36MEvalData:
    """H3.6M Protocol-2 frames with the 2D keypoints to fit."""

    imgname: np.ndarray  # (N,) str
    center: np.ndarray  # (N, 2) float64 px
    scale: np.ndarray  # (N,) float64 (bbox side / 200)
    S: np.ndarray  # (N, 24, 4) float64 metres, root-centred
    keypoints: np.ndarray  # (N, K, 3) float64 px + confidence
    layout: str  # "spin24" (from `part`) or "openpose25" (from `openpose`)
    keypoint_source: str  # "<file>:<key>"

    def __len__(self) -> int:
        return int(self.S.shape[0])


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as err:  # object arrays need pickle
        raise H36MFileError(f"{path}: could not read without pickle ({err}); expected plain numeric/unicode arrays") from err


def _strings(arr: np.ndarray, path: Path, key: str) -> np.ndarray:
    if arr.ndim != 1:
        raise H36MFileError(f"{path}: key '{key}' must be (N,) strings, got shape {arr.shape}")
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "S":
        return arr.astype(str)
    raise H36MFileError(f"{path}: key '{key}' must hold strings (numpy unicode), got dtype {arr.dtype}")


def _floats(arr: np.ndarray, shape: tuple, path: Path, key: str) -> np.ndarray:
    """Check shape (None = any) and numeric dtype; return float64."""
    if arr.dtype.kind not in "fiu":
        raise H36MFileError(f"{path}: key '{key}' must be numeric (float64 as SPIN writes it), got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise H36MFileError(f"{path}: key '{key}' must have shape {want}, got {arr.shape}")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise H36MFileError(f"{path}: key '{key}' contains non-finite values")
    return out


def _keypoints_from(arrays: dict[str, np.ndarray], path: Path, key: str | None) -> tuple[np.ndarray, str, str] | None:
    keys = [key] if key is not None else [k for k in KEYPOINT_KEYS if k in arrays]
    if key is not None and key not in arrays:
        raise H36MFileError(f"{path}: no key '{key}' (keys: {sorted(arrays)})")
    if not keys:
        return None
    k = keys[0]
    if k not in KEYPOINT_KEYS:
        raise H36MFileError(f"{path}: keypoint key must be one of {sorted(KEYPOINT_KEYS)}, got '{k}'")
    layout, num = KEYPOINT_KEYS[k]
    kps = _floats(arrays[k], (None, num, 3), path, k)
    return kps, layout, f"{path}:{k}"


def read_p2_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a P2 npz, with P2_KEYS checked and converted (`imgname` str, the others float64)."""
    path = Path(path)
    arrays = _load_npz(path)
    missing = [k for k in P2_KEYS if k not in arrays]
    if missing:
        raise H36MFileError(f"{path}: missing key(s) {missing}; an H3.6M P2 file has {list(P2_KEYS)}")
    imgname = _strings(arrays["imgname"], path, "imgname")
    N = imgname.shape[0]
    S = _floats(arrays["S"], (N, 24, 4), path, "S")
    if not np.isin(S[..., 3], (0.0, 1.0)).all():
        raise H36MFileError(f"{path}: key 'S' column 3 must be 0/1 validity flags")
    if np.abs(S[:, UNUSED_SPIN24_ROWS]).max(initial=0.0) != 0.0:
        raise H36MFileError(f"{path}: key 'S' rows {UNUSED_SPIN24_ROWS} must be all zero (unused SPIN-24 joints)")
    arrays.update(imgname=imgname, S=S, center=_floats(arrays["center"], (N, 2), path, "center"),
                  scale=_floats(arrays["scale"], (N,), path, "scale"))
    return arrays


def read_h36m_p2(
    path: str | os.PathLike,
    keypoints_path: str | os.PathLike | None = None,
    keypoint_key: str | None = None,
) -> H36MEvalData:
    """Read the P2 npz and the 2D keypoints (from `keypoints_path` if given, else `part`/`openpose` in it)."""
    path = Path(path)
    arrays = read_p2_arrays(path)
    imgname, center, scale, S = (arrays[k] for k in P2_KEYS)
    N = imgname.shape[0]

    if keypoints_path is not None:
        kp_path = Path(keypoints_path)
        kp_arrays = _load_npz(kp_path)
        found = _keypoints_from(kp_arrays, kp_path, keypoint_key)
        if found is None:
            raise H36MFileError(f"{kp_path}: no 'part' or 'openpose' key (keys: {sorted(kp_arrays)}). {HOW_TO_MAKE_KEYPOINTS}")
        kps, layout, source = found
        if "imgname" in kp_arrays:
            names = _strings(kp_arrays["imgname"], kp_path, "imgname")
            if names.shape[0] != kps.shape[0]:
                raise H36MFileError(f"{kp_path}: 'imgname' has {names.shape[0]} entries, keypoints {kps.shape[0]}")
            index = {n: i for i, n in enumerate(names.tolist())}
            if len(index) != len(names):
                raise H36MFileError(f"{kp_path}: 'imgname' has duplicate names")
            absent = [n for n in imgname.tolist() if n not in index]
            if absent:
                raise H36MFileError(
                    f"{kp_path}: no keypoints for {len(absent)} of {N} frames of {path} (e.g. {absent[0]!r})"
                )
            kps = kps[[index[n] for n in imgname.tolist()]]
        elif kps.shape[0] != N:
            raise H36MFileError(
                f"{kp_path}: '{source.rsplit(':', 1)[1]}' has {kps.shape[0]} frames but {path} has {N}; "
                "without an 'imgname' key they must correspond one to one"
            )
    else:
        found = _keypoints_from(arrays, path, keypoint_key)
        if found is None:
            raise H36MFileError(f"{path}: no 2D keypoints to fit. {HOW_TO_MAKE_KEYPOINTS}")
        kps, layout, source = found
        if kps.shape[0] != N:
            raise H36MFileError(f"{path}: keypoints have {kps.shape[0]} frames, 'imgname' {N}")
    return H36MEvalData(imgname, center, scale, S, kps, layout, source)


def write_keypoint_file(path: str | os.PathLike, imgname: np.ndarray, part: np.ndarray) -> None:
    """Write a keypoint npz (`imgname` (N,), `part` (N, 24, 3)) readable by `read_h36m_p2`, atomically."""
    imgname = np.asarray(imgname, dtype=str)
    part = np.asarray(part, dtype=np.float64)
    if part.ndim != 3 or part.shape[1:] != (24, 3) or part.shape[0] != imgname.shape[0]:
        raise ValueError(f"part must be (N, 24, 3) with N = len(imgname) = {imgname.shape[0]}, got {part.shape}")
    atomic_savez(path, imgname=imgname, part=part)


class H36MEvalDataset(Dataset):
    """Torch view of `H36MEvalData`: one dict of tensors per frame (float32 unless told)."""

    def __init__(self, data: H36MEvalData, dtype: torch.dtype = torch.float32) -> None:
        self.data = data
        self.keypoints = torch.as_tensor(data.keypoints, dtype=dtype)
        self.S = torch.as_tensor(data.S, dtype=torch.float64)
        self.center = torch.as_tensor(data.center, dtype=dtype)
        self.scale = torch.as_tensor(data.scale, dtype=dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        return {"index": i, "keypoints": self.keypoints[i], "S": self.S[i], "center": self.center[i],
                "scale": self.scale[i]}
