"""Readers of body-shape data sets (paper supplement D): each returns a `ShapeSet` of 10 betas per body.

- SURREAL's `smpl_data.npz` (Varol et al. 2017; a licensed download the user brings): arrays
  `maleshapes` and `femaleshapes`, (N, D) SMPL betas fitted to CAESAR scans; SURREAL's own code keeps the
  first `n_sh_bshapes` (10) columns (`smpl_data['%sshapes' % gender][:, :n_sh_bshapes]`), as here. The
  file also holds the CMU poses (`pose_*`, `trans_*`); npz members load lazily, so only the shapes are read.
- AMASS: each `*_poses.npz` / `*_stageii.npz` has the subject's `betas` (16 for SMPL+H G); one body per
  subject folder, its first 10 betas (the authors' code reads 10 of AMASS's 16). Sequences of one subject
  share their betas; a subject whose files disagree keeps its first file's and is reported.
- The open shape set shipped for the open body model (`pose_prior/body_model/assets/open_shapes.npz`,
  made by `tools/build_open_shape_set.py`): anny bodies projected into the open model's betas.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

NUM_BETAS = 10
GENDERS = ("male", "female")
OPEN_SHAPES = Path(__file__).resolve().parents[2] / "pose_prior" / "body_model" / "assets" / "open_shapes.npz"


@dataclass
class ShapeSet:
    """Bodies as betas (N, K) float32, with a label per body (gender or subject) and where they came from."""

    betas: np.ndarray  # (N, K) float32
    labels: np.ndarray  # (N,) str: "male"/"female" (SURREAL), "<SubDataset>/<subject>" (AMASS), "open"
    source: str
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.betas.ndim != 2 or len(self.labels) != len(self.betas):
            raise ValueError(f"{self.source}: betas {self.betas.shape} and labels {len(self.labels)} do not match")
        if not np.isfinite(self.betas).all():
            raise ValueError(f"{self.source}: non-finite betas")


def _first_betas(arr: np.ndarray, num_betas: int, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] < num_betas:
        raise ValueError(f"{what}: expected (N, >= {num_betas}) betas, got {arr.shape}")
    return arr[:, :num_betas].astype(np.float32)


def read_surreal_shapes(path: str | os.PathLike, gender: Literal["male", "female", "both"] = "both",
                        num_betas: int = NUM_BETAS) -> ShapeSet:
    """SURREAL's `smpl_data.npz` -> the CAESAR fits of one gender or both (male first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SURREAL's smpl_data.npz not found (download it from SURREAL's site, "
                                "then set data.shapes_path)")
    genders = GENDERS if gender == "both" else (gender,)
    if not set(genders) <= set(GENDERS):
        raise ValueError(f"gender must be 'male', 'female' or 'both', got {gender!r}")
    try:
        with np.load(path, allow_pickle=False) as data:  # lazy: only the members read are decompressed
            missing = [f"{g}shapes" for g in genders if f"{g}shapes" not in data.files]
            if missing:
                raise KeyError(f"{path}: no {missing} in the file (keys: {sorted(data.files)[:8]} ...)")
            parts = [_first_betas(data[f"{g}shapes"], num_betas, f"{path}:{g}shapes") for g in genders]
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        if isinstance(err, ValueError) and "betas" in str(err):
            raise
        raise ValueError(f"{path}: not a readable npz ({type(err).__name__}: {err})") from err
    labels = np.concatenate([np.full(len(p), g) for g, p in zip(genders, parts)])
    return ShapeSet(np.concatenate(parts), labels, f"surreal:{path}")


def read_amass_betas(amass_dir: str | os.PathLike, num_betas: int = NUM_BETAS) -> ShapeSet:
    """One body per AMASS subject folder (<SubDataset>/<subject>/...): its first `num_betas` betas."""
    root = Path(amass_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: AMASS folder not found")
    subjects: dict[str, np.ndarray] = {}
    notes: list[str] = []
    files = sorted(p for pattern in ("*_poses.npz", "*_stageii.npz") for p in root.rglob(pattern))
    for file in files:
        subject = str(file.parent.relative_to(root))
        try:
            with np.load(file, allow_pickle=False) as data:
                betas = np.asarray(data["betas"], dtype=np.float64).reshape(-1)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
            notes.append(f"skipped {file.relative_to(root)}: {type(err).__name__}: {err}")
            continue
        if betas.size < num_betas or not np.isfinite(betas[:num_betas]).all():
            notes.append(f"skipped {file.relative_to(root)}: betas {betas.shape} unusable")
            continue
        if subject not in subjects:
            subjects[subject] = betas[:num_betas]
        elif not np.allclose(subjects[subject], betas[:num_betas], atol=1e-5):
            notes.append(f"{subject}: {file.name} has other betas than the subject's first file; kept the first")
    if not subjects:
        raise ValueError(f"{root}: no AMASS file with betas found")
    names = sorted(subjects)
    return ShapeSet(np.stack([subjects[s] for s in names]).astype(np.float32), np.array(names),
                    f"amass:{root}", notes)


def read_open_shapes(path: str | os.PathLike = OPEN_SHAPES, num_betas: int = NUM_BETAS) -> ShapeSet:
    """The shipped open shape set: anny bodies in the open body model's betas. Label: "male" where anny's
    gender phenotype is <= 0.5 (anny: 0 = male, 1 = female; its calibrated sampler uses the boys' tables
    there), else "female"."""
    with np.load(path, allow_pickle=False) as data:
        betas = _first_betas(data["betas"], num_betas, str(path))
        gender = data["phenotype_gender"] if "phenotype_gender" in data.files else np.full(len(betas), np.nan)
    labels = np.where(gender <= 0.5, "male", np.where(gender > 0.5, "female", "unknown"))
    return ShapeSet(betas, labels, "open")
