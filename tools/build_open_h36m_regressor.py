"""Build the 17-joint H3.6M-style regressors of the open body models (full and light), run once.

Writes `pose_prior/body_model/assets/open_{light_,}smpl_J_regressor_h36m.npy`: (17, V) float64,
Fortran order like SPIN's `J_regressor_h36m.npy`, rows in SPIN's H3.6M-17 order (docs/protocols.md#h36m-17-spin-order):

  0 Pelvis        <- the model's own J_regressor row of SMPL joint 0 (pelvis)
  1/2/3 L hip, knee, ankle   <- rows of SMPL joints 1, 4, 7 (left_hip, left_knee, left_ankle)
  4/5/6 R hip, knee, ankle   <- rows of SMPL joints 2, 5, 8
  7 Spine         <- row of SMPL joint 6 (spine2, mid torso)
  8 Neck/Thorax   <- row of SMPL joint 12 (neck, base of the neck)
  9 Jaw (H3.6M "Head")      <- row of SMPL joint 15 (head)
  10 Head top     <- the `head_top` landmark vertex (one-hot row)
  11/12/13 L shoulder, elbow, wrist <- rows of SMPL joints 16, 18, 20
  14/15/16 R shoulder, elbow, wrist <- rows of SMPL joints 17, 19, 21

These are the same definitions as `pose_prior.body_model.keypoints.OPEN_MODEL_EXTRA_SUBSTITUTES`. They are NOT
SPIN's regressor (which was fitted to H3.6M marker joints on SMPL's mesh): numbers on the open model are
not comparable with published SMPL numbers.

`head_top` = the head vertex (skinning weight to SMPL's head > 0.5) maximising
y - 0.5 * (horizontal distance from the head joint) in the rest pose; it is added to the models'
`*_vertex_ids.json` files (SMPL and SMPL-H layouts share the mesh) when missing (additive edit).

Usage: python tools/build_open_h36m_regressor.py [--check]   (--check: verify the files, write nothing)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "pose_prior" / "body_model" / "assets"
STEMS = {"open": "open", "open-light": "open_light"}
# SPIN's H3.6M-17 order -> source: SMPL joint index, or "head_top"
H36M17_SOURCES: tuple[int | str, ...] = (0, 1, 4, 7, 2, 5, 8, 6, 12, 15, "head_top", 16, 18, 20, 17, 19, 21)
HEAD_JOINT = 15


def head_top_vertex(v_template: np.ndarray, weights: np.ndarray, rest_joints: np.ndarray) -> int:
    """Index of the top-of-head vertex of a rest-pose mesh (y up)."""
    idx = np.nonzero(weights[:, HEAD_JOINT] > 0.5)[0]
    if idx.size == 0:
        raise ValueError("no vertex is skinned mainly to the head joint")
    head = rest_joints[HEAD_JOINT]
    horiz = np.hypot(v_template[idx, 0] - head[0], v_template[idx, 2] - head[2])
    return int(idx[np.argmax(v_template[idx, 1] - 0.5 * horiz)])


def build(stem: str) -> tuple[np.ndarray, int]:
    """(regressor (17, V) float64, head_top vertex id) for the open model asset `stem`."""
    arrays = np.load(ASSETS / f"{stem}_smpl.npz")
    v = arrays["v_template"].astype(np.float64)
    jreg = arrays["J_regressor"].astype(np.float64)  # (24, V)
    weights = arrays["weights"].astype(np.float64)
    top = head_top_vertex(v, weights, jreg @ v)
    reg = np.zeros((17, v.shape[0]), dtype=np.float64)
    for row, src in enumerate(H36M17_SOURCES):
        if src == "head_top":
            reg[row, top] = 1.0
        else:
            reg[row] = jreg[int(src)]
    return np.asfortranarray(reg), top


def add_head_top(stem: str, top: int, check: bool) -> list[str]:
    """Add `head_top` to the vertex-id json files of the asset (both layouts); returns messages."""
    msgs = []
    for layout in ("smpl", "smplh"):
        path = ASSETS / f"{stem}_{layout}_vertex_ids.json"
        if not path.is_file():
            continue
        ids = json.loads(path.read_text())
        if ids.get("head_top") == top:
            continue
        if "head_top" in ids:
            raise SystemExit(f"{path}: head_top is {ids['head_top']}, expected {top}")
        msgs.append(f"{path.name}: add head_top = {top}")
        if not check:
            ids["head_top"] = top
            path.write_text(json.dumps(ids, indent=1) + "\n")
    return msgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files, write nothing")
    args = parser.parse_args(argv)
    bad = 0
    for stem in STEMS.values():
        reg, top = build(stem)
        out = ASSETS / f"{stem}_smpl_J_regressor_h36m.npy"
        for msg in add_head_top(stem, top, args.check):
            print(msg)
            bad += args.check
        if args.check:
            if not out.is_file() or not np.array_equal(np.load(out), reg):
                print(f"{out.name}: missing or out of date")
                bad += 1
        else:
            np.save(out, reg)
            print(f"{out.relative_to(ROOT)}: {reg.shape}, head_top vertex {top}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
