"""Synthetic AMASS-format tree: real layout and keys, joint limits, smoothness, variety, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.amass.demo import (
    BODY_JOINTS,
    DEMO_DATASETS,
    DEMO_MANIFEST,
    JOINT_LIMITS,
    MOTIONS,
    synthesize_motion,
    write_demo_amass,
)
from tests.fixtures.amass import DEMO_TREE_SIZE


def _body(path):
    with np.load(path) as npz:
        return npz["poses"][:, 3:66] if path.name.endswith("_poses.npz") else npz["pose_body"]


def test_layout_and_keys(demo_amass_tree):
    files = sorted(demo_amass_tree.rglob("*.npz"))
    seqs = [f for f in files if f.name.endswith(("_poses.npz", "_stageii.npz"))]
    n_ds = len(DEMO_DATASETS)
    assert len(seqs) == n_ds * DEMO_TREE_SIZE["subjects_per_dataset"] * DEMO_TREE_SIZE["sequences_per_subject"]
    assert {f.relative_to(demo_amass_tree).parts[0] for f in seqs} == {d.name for d in DEMO_DATASETS}
    assert all(len(f.relative_to(demo_amass_tree).parts) == 3 for f in seqs)  # <ds>/<subject>/<seq>
    T = DEMO_TREE_SIZE["frames_per_sequence"]
    smplh = [f for f in seqs if f.name.endswith("_poses.npz")]
    smplx = [f for f in seqs if f.name.endswith("_stageii.npz")]
    assert smplh and smplx
    for f in smplh:
        with np.load(f) as d:
            assert d["poses"].shape == (T, 156) and d["poses"].dtype == np.float64
            assert d["trans"].shape == (T, 3) and d["betas"].shape == (16,) and d["dmpls"].shape == (T, 8)
            assert d["gender"].dtype.kind == "U" and str(d["gender"]) in ("male", "female", "neutral")
            assert float(d["mocap_framerate"]) == DEMO_TREE_SIZE["framerate"]
    for f in smplx:
        with np.load(f) as d:
            assert d["pose_body"].shape == (T, 63) and d["root_orient"].shape == (T, 3)
            assert d["pose_hand"].shape == (T, 90) and d["pose_jaw"].shape == (T, 3) and d["pose_eye"].shape == (T, 6)
            assert str(d["gender"]) == "neutral" and float(d["mocap_frame_rate"]) == DEMO_TREE_SIZE["framerate"]
            # the SMPL-X `poses` vector holds the same body pose at columns 3:66
            np.testing.assert_array_equal(d["poses"][:, 3:66], d["pose_body"])
            np.testing.assert_array_equal(d["poses"][:, :3], d["root_orient"])
    assert (demo_amass_tree / DEMO_MANIFEST).is_file()


def test_joint_limit_table_is_anatomical():
    assert JOINT_LIMITS.shape == (21, 3, 2) and len(BODY_JOINTS) == 21
    assert (JOINT_LIMITS[..., 0] < JOINT_LIMITS[..., 1]).all()
    lim = dict(zip(BODY_JOINTS, JOINT_LIMITS))
    # knees bend one way only (+x), elbows one way only (left -y, right +y)
    assert lim["l_knee"][0][0] == 0.0 and lim["r_knee"][0][0] == 0.0 and lim["l_knee"][0][1] > 2.0
    assert lim["l_elbow"][1][1] == 0.0 and lim["r_elbow"][1][0] == 0.0
    # left/right mirror: x same, y and z negated
    for joint in ("hip", "knee", "ankle", "collar", "shoulder", "elbow", "wrist"):
        left, right = lim[f"l_{joint}"], lim[f"r_{joint}"]
        np.testing.assert_allclose(left[0], right[0])
        np.testing.assert_allclose(left[1], -right[1][::-1])
        np.testing.assert_allclose(left[2], -right[2][::-1])


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_motions_within_limits_and_smooth(motion):
    rng = np.random.default_rng(3)
    out = synthesize_motion(motion, 600, 60.0, rng)
    body = out["pose_body"].reshape(600, 21, 3)
    assert (body >= JOINT_LIMITS[..., 0]).all() and (body <= JOINT_LIMITS[..., 1]).all()
    # smooth: frame-to-frame change stays small at 60 fps (no jumps), accelerations smaller still
    assert np.abs(np.diff(out["pose_body"], axis=0)).max() < 0.15
    assert np.abs(np.diff(out["pose_body"], n=2, axis=0)).max() < 0.05
    # root orientation is continuous as a rotation (axis-angle may wrap; compare rotation matrices)
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(out["root_orient"])
    assert (r[1:] * r[:-1].inv()).magnitude().max() < 0.1
    assert out["pose_body"].std(axis=0).max() > 0.1  # it moves


def test_motions_differ():
    """Different motion types move different joints: the per-joint motion profiles are distinct."""
    profiles = {}
    for motion in MOTIONS:
        body = synthesize_motion(motion, 600, 60.0, np.random.default_rng(0))["pose_body"].reshape(600, 21, 3)
        profiles[motion] = body.std(axis=0).sum(axis=1)  # (21,) how much each joint moves
    names = list(profiles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(profiles[a] - profiles[b]).max() > 0.05, (a, b)
    knees = [BODY_JOINTS.index("l_knee"), BODY_JOINTS.index("r_knee")]
    assert profiles["squat"][knees].min() > 3 * profiles["armraise"][knees].max()
    shoulder = BODY_JOINTS.index("l_shoulder")
    assert profiles["armraise"][shoulder] + profiles["squat"][shoulder] > 0.3


def test_deterministic_given_seed(demo_amass_tree, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    write_demo_amass(again, **DEMO_TREE_SIZE)
    write_demo_amass(other, **{**DEMO_TREE_SIZE, "seed": 1})
    for f in sorted(demo_amass_tree.rglob("*_poses.npz")):
        rel = f.relative_to(demo_amass_tree)
        np.testing.assert_array_equal(_body(f), _body(again / rel))
        if (other / rel).exists():
            assert not np.array_equal(_body(f), _body(other / rel))


def test_rerun_skips_complete_tree_and_rewrites_on_change(tmp_path):
    small = dict(DEMO_TREE_SIZE, frames_per_sequence=30)
    files = write_demo_amass(tmp_path, **small)
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert write_demo_amass(tmp_path, **small) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    fewer = write_demo_amass(tmp_path, **dict(small, sequences_per_subject=1, frames_per_sequence=40))
    assert len(fewer) == len(files) // 2
    assert _body(fewer[0]).shape == (40, 63)
    assert len(list(tmp_path.rglob("*_poses.npz"))) + len(list(tmp_path.rglob("*_stageii.npz"))) == len(fewer)
    assert not list(tmp_path.rglob("*.tmp"))
