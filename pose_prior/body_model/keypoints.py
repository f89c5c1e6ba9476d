"""Keypoint layouts (SPIN-24/49, OpenPose BODY_25, COCO-17, H3.6M-17) and how a body model produces them.

Everything here is data from SPIN:constants.py, SPIN's preprocessing scripts and smplx (see
docs/protocols.md#joint-orders-and-keypoint-layouts). Indices are 0-based.

A `KeypointMap` says how each keypoint of a layout is obtained from a body model's output: a kinematic
joint, a landmark vertex, or a row of a vertex regressor (all expressed as one (K, V) regressor plus a
joint index per keypoint). SPIN-49 is defined on SMPL through "SMPL-54" = 24 kinematic joints +
21 landmark vertices (smplx names) + 9 rows of `J_regressor_extra`. With real SMPL this reproduces
SPIN exactly; the open body model has its own landmark vertex ids (a json shipped with it) and no
`J_regressor_extra`, so its 9 extra keypoints use documented kinematic substitutes (flagged
`approximate`) or are marked unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------

SPIN24_NAMES = (
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle",
    "Right Wrist", "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)",
    "Head (H36M)", "Nose", "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)
J24_FLIP_PERM = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22)

OPENPOSE25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
OP25_FLIP_PERM = (0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21)

SPIN49_NAMES = tuple(f"OP {n}" for n in OPENPOSE25_NAMES) + SPIN24_NAMES
J49_FLIP_PERM = OP25_FLIP_PERM + tuple(25 + i for i in J24_FLIP_PERM)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO17_FLIP_PERM = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

# SPIN's meaning of the 17 H3.6M joints (left leg first; NOT VideoPose3D's order)
H36M17_NAMES = (
    "Pelvis", "Left Hip", "Left Knee", "Left Ankle", "Right Hip", "Right Knee", "Right Ankle",
    "Spine", "Neck/Thorax", "Jaw", "Head Top", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Right Shoulder", "Right Elbow", "Right Wrist",
)
H36M17_FLIP_PERM = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)

LSP14_NAMES = SPIN24_NAMES[:13] + ("Head (H36M)",)  # evaluation joints: 14th = GT-24 index 18
LSP14_FLIP_PERM = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13)

SMPL24_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)

# ---------------------------------------------------------------------------------------------
# Index maps
# ---------------------------------------------------------------------------------------------

# raw H3.6M 32 joints -> SPIN's 17 (h36m_idx), and 17 -> SPIN-24 positions (global_idx: S24[global_idx] = S17)
H36M32_TO_H36M17 = (11, 6, 7, 8, 1, 2, 3, 12, 24, 14, 15, 17, 18, 19, 25, 26, 27)
H36M17_TO_SPIN24 = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)
h36m_idx = H36M32_TO_H36M17
global_idx = H36M17_TO_SPIN24

# evaluation (SPIN:constants.py)
H36M_TO_J17 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
H36M_TO_J14 = H36M_TO_J17[:14]
J24_TO_J17 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17)
J24_TO_J14 = J24_TO_J17[:14]

# COCO-17 -> SPIN-24 positions (joints_idx: part[joints_idx] = kp17)
COCO17_TO_SPIN24 = (19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0)
joints_idx = COCO17_TO_SPIN24

# EFT's OpenPose-18 selections
SPIN24_TO_OP18 = (19, 12, 8, 7, 6, 9, 10, 11, 2, 1, 0, 3, 4, 5, 21, 20, 23, 22)
SPIN49_TO_OP18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# smplify-x: SMPL joints + vertex joints (smplx order) -> BODY_25
SMPL45_TO_OPENPOSE25 = (24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34)

# SPIN's "SMPL-54": 24 kinematic joints, 21 landmark vertices (this smplx order), 9 J_regressor_extra rows
SMPL_LANDMARK_VERTICES = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
J_REGRESSOR_EXTRA_NAMES = (
    "Right Hip (LSP)", "Left Hip (LSP)", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)",
    "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)",
)
# SPIN-49 keypoint k comes from SMPL-54 index SPIN49_FROM_SMPL54[k] (SPIN:constants.py JOINT_MAP)
SPIN49_FROM_SMPL54 = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
)

# Open body model: kinematic (or head-top vertex) substitutes for J_regressor_extra rows 45..53.
# Not SPIN's definitions: used only when no extra regressor is given; flagged `approximate`.
OPEN_MODEL_EXTRA_SUBSTITUTES: dict[int, tuple[str, int | str]] = {
    45: ("joint", 2),  # Right Hip (LSP) ~ SMPL right_hip
    46: ("joint", 1),  # Left Hip (LSP) ~ SMPL left_hip
    47: ("joint", 12),  # Neck (LSP) ~ SMPL neck
    48: ("vertex", "head_top"),  # Top of Head (LSP): a landmark vertex if the model names one
    49: ("joint", 0),  # Pelvis (MPII) ~ SMPL pelvis
    50: ("joint", 12),  # Thorax (MPII) ~ SMPL neck
    51: ("joint", 6),  # Spine (H36M) ~ SMPL spine2
    52: ("joint", 15),  # Jaw (H36M) ~ SMPL head
    53: ("vertex", "head_top"),  # Head (H36M) = H3.6M head top
}


@dataclass(frozen=True)
class KeypointLayout:
    """A named list of keypoints with its left/right flip permutation."""

    name: str
    joint_names: tuple[str, ...]
    flip_perm: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if sorted(self.flip_perm) != list(range(n)):
            raise ValueError(f"layout {self.name}: flip_perm is not a permutation of {n} keypoints")
        if any(self.flip_perm[self.flip_perm[i]] != i for i in range(n)):
            raise ValueError(f"layout {self.name}: flip_perm is not an involution")

    @property
    def num_keypoints(self) -> int:
        return len(self.joint_names)

    def index(self, name: str) -> int:
        return self.joint_names.index(name)


SPIN24 = KeypointLayout("spin24", SPIN24_NAMES, J24_FLIP_PERM)
SPIN49 = KeypointLayout("spin49", SPIN49_NAMES, J49_FLIP_PERM)
OPENPOSE25 = KeypointLayout("openpose25", OPENPOSE25_NAMES, OP25_FLIP_PERM)
COCO17 = KeypointLayout("coco17", COCO17_NAMES, COCO17_FLIP_PERM)
H36M17 = KeypointLayout("h36m17", H36M17_NAMES, H36M17_FLIP_PERM)
LSP14 = KeypointLayout("lsp14", LSP14_NAMES, LSP14_FLIP_PERM)
LAYOUTS = {lay.name: lay for lay in (SPIN24, SPIN49, OPENPOSE25, COCO17, H36M17, LSP14)}

# each layout as a selection of SPIN-49 keypoints
SPIN49_SELECTION = {
    "spin49": tuple(range(49)),
    "spin24": tuple(range(25, 49)),
    "openpose25": tuple(range(25)),
    "coco17": tuple(25 + COCO17_TO_SPIN24[k] for k in range(17)),
}


def get_layout(name: str) -> KeypointLayout:
    """The layout called `name` (spin24, spin49, openpose25, coco17, h36m17, lsp14)."""
    if name not in LAYOUTS:
        raise KeyError(f"unknown keypoint layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def coco17_to_spin24(kp17: np.ndarray) -> np.ndarray:
    """COCO (..., 17, 3) with visibility v in {0,1,2} -> SPIN-24 `part` (..., 24, 3) with confidence 0/1."""
    kp17 = np.asarray(kp17, dtype=np.float64)
    part = np.zeros(kp17.shape[:-2] + (24, 3))
    part[..., COCO17_TO_SPIN24, :2] = kp17[..., :2]
    part[..., COCO17_TO_SPIN24, 2] = (kp17[..., 2] > 0).astype(np.float64)
    return part


def h36m32_to_spin24(d2: np.ndarray) -> np.ndarray:
    """Raw H3.6M 2D (..., 32, 2) pixels -> SPIN-24 `part` (..., 24, 3): part[global_idx,:2] = D2[h36m_idx]."""
    d2 = np.asarray(d2, dtype=np.float64)
    part = np.zeros(d2.shape[:-2] + (24, 3))
    part[..., H36M17_TO_SPIN24, :2] = d2[..., H36M32_TO_H36M17, :2]
    part[..., H36M17_TO_SPIN24, 2] = 1.0
    return part


# ---------------------------------------------------------------------------------------------
# Keypoints from a body model
# ---------------------------------------------------------------------------------------------


@dataclass
class KeypointMap:
    """How each keypoint of `layout` is computed from a body model's vertices and kinematic joints."""

    layout: KeypointLayout
    joint_ids: torch.Tensor  # (K,) long: kinematic joint index, or -1 = use `vertex_regressor` row
    vertex_regressor: torch.Tensor  # (K, V): one-hot rows for landmark vertices, regressor rows otherwise
    available: torch.Tensor  # (K,) bool: False where the model cannot produce the keypoint (output 0)
    approximate: torch.Tensor  # (K,) bool: True where a substitute replaces SPIN's definition

    def __call__(self, vertices: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """vertices (B, V, 3), joints (B, J, 3) -> keypoints (B, K, 3) (unavailable ones are zero)."""
        if vertices.shape[-2] != self.vertex_regressor.shape[1]:
            raise ValueError(
                f"keypoint map {self.layout.name}: built for {self.vertex_regressor.shape[1]} vertices, "
                f"got {vertices.shape[-2]}"
            )
        reg = self.vertex_regressor.to(vertices)
        from_vertices = torch.einsum("kv,bvc->bkc", reg, vertices)  # (B, K, 3)
        ids = self.joint_ids.to(vertices.device)
        from_joints = joints[:, ids.clamp(min=0)]  # (B, K, 3)
        out = torch.where((ids >= 0)[None, :, None], from_joints, from_vertices)
        return out * self.available.to(vertices.device)[None, :, None]

    def to(self, device: torch.device | str) -> KeypointMap:
        return KeypointMap(self.layout, self.joint_ids.to(device), self.vertex_regressor.to(device),
                           self.available.to(device), self.approximate.to(device))


def smpl54_sources(
    vertex_ids: Mapping[str, int],
    extra_regressor: np.ndarray | torch.Tensor | None = None,
    substitutes: Mapping[int, tuple[str, int | str]] | None = None,
) -> list[tuple[str, object] | None]:
    """Sources of SPIN's SMPL-54 points: ("joint", j), ("vertex", vid), ("regressor", row (V,)) or None.

    Landmark vertices come from `vertex_ids` (smplx names); indices 45..53 from `extra_regressor`
    (9, V) = SPIN's `J_regressor_extra.npy` if given, else from `substitutes` (e.g.
    OPEN_MODEL_EXTRA_SUBSTITUTES), else None (unavailable).
    """
    sources: list[tuple[str, object] | None] = [("joint", j) for j in range(24)]
    for name in SMPL_LANDMARK_VERTICES:
        sources.append(("vertex", int(vertex_ids[name])) if name in vertex_ids else None)
    if extra_regressor is not None:
        extra = np.asarray(extra_regressor, dtype=np.float64)
        if extra.ndim != 2 or extra.shape[0] != 9:
            raise ValueError(f"J_regressor_extra must be (9, V), got {extra.shape}")
        sources.extend(("regressor", extra[r]) for r in range(9))
    else:
        for idx in range(45, 54):
            sub = (substitutes or {}).get(idx)
            if sub is None:
                sources.append(None)
            elif sub[0] == "joint":
                sources.append(("joint~", int(sub[1])))
            elif sub[0] == "vertex":
                vid = vertex_ids.get(str(sub[1]))
                sources.append(("vertex~", int(vid)) if vid is not None else None)
            else:
                raise ValueError(f"substitute for SMPL-54 index {idx}: unknown kind {sub[0]!r}")
    return sources


def build_keypoint_map(
    layout: KeypointLayout | str,
    num_vertices: int,
    vertex_ids: Mapping[str, int],
    extra_regressor: np.ndarray | torch.Tensor | None = None,
    substitutes: Mapping[int, tuple[str, int | str]] | None = None,
    dtype: torch.dtype = torch.float32,
) -> KeypointMap:
    """KeypointMap for `layout` (any SPIN-49 selection) from a body model's landmark ids and regressors."""
    layout = get_layout(layout) if isinstance(layout, str) else layout
    if layout.name not in SPIN49_SELECTION:
        raise ValueError(f"layout {layout.name!r} is not produced from a body model; use {sorted(SPIN49_SELECTION)}")
    sources = smpl54_sources(vertex_ids, extra_regressor, substitutes)
    sel = SPIN49_SELECTION[layout.name]
    K = len(sel)
    joint_ids = torch.full((K,), -1, dtype=torch.long)
    reg = torch.zeros(K, num_vertices, dtype=dtype)
    available = torch.zeros(K, dtype=torch.bool)
    approximate = torch.zeros(K, dtype=torch.bool)
    for k, spin49_index in enumerate(sel):
        src = sources[SPIN49_FROM_SMPL54[spin49_index]]
        if src is None:
            continue
        kind, value = src
        available[k] = True
        approximate[k] = kind.endswith("~")
        kind = kind.rstrip("~")
        if kind == "joint":
            joint_ids[k] = int(value)
        elif kind == "vertex":
            vid = int(value)
            if not 0 <= vid < num_vertices:
                raise ValueError(f"landmark vertex id {vid} for {layout.joint_names[k]!r} is outside 0..{num_vertices - 1}")
            reg[k, vid] = 1.0
        else:
            row = torch.as_tensor(np.asarray(value), dtype=dtype)
            if row.shape != (num_vertices,):
                raise ValueError(f"regressor row for {layout.joint_names[k]!r} has {row.shape[0]} vertices, model has {num_vertices}")
            reg[k] = row
    return KeypointMap(layout, joint_ids, reg, available, approximate)


def keypoint_map_for_body_model(
    body_model,
    layout: KeypointLayout | str = "spin49",
    extra_regressor: np.ndarray | torch.Tensor | None = None,
) -> KeypointMap:
    """KeypointMap for a loaded BodyModel: SPIN's definitions on SMPL, substitutes on the open model.

    With SMPL's own mesh (6890 vertices) and `extra_regressor` = SPIN's J_regressor_extra (9, 6890),
    the map is exactly SPIN's. Without an extra regressor the 9 extra keypoints use
    OPEN_MODEL_EXTRA_SUBSTITUTES (flagged `approximate`).
    """
    vertex_ids = dict(getattr(body_model, "vertex_ids", {}) or {})
    return build_keypoint_map(
        layout,
        num_vertices=int(body_model.num_vertices),
        vertex_ids=vertex_ids,
        extra_regressor=extra_regressor,
        substitutes=None if extra_regressor is not None else OPEN_MODEL_EXTRA_SUBSTITUTES,
        dtype=body_model.dtype if isinstance(body_model.dtype, torch.dtype) else torch.float32,
    )


def select(keypoints: torch.Tensor | np.ndarray, indices: Sequence[int]) -> torch.Tensor | np.ndarray:
    """keypoints[..., indices, :] for torch or numpy arrays."""
    idx = list(indices)
    return keypoints[..., idx, :]
