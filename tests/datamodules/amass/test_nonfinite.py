"""AMASS preparation with non-finite frames: finite frames kept bit-exact, drops counted, policy per run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from datamodules.amass import prepare as prep
from datamodules.amass.prepare import ARRAY_NAME, MANIFEST_NAME, prepare_amass, select_frames
from pose_prior.io import atomic_savez

SPLITS = {"train": ["CMU"]}
REL = "CMU/01/seq_poses.npz"


def _poses(n: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, 156))


def _tree(root: Path, poses: np.ndarray, fps: float = 60.0) -> Path:
    """One SMPL+H sequence `CMU/01/seq_poses.npz` under `root`."""
    atomic_savez(root / REL, poses=poses, trans=np.zeros((len(poses), 3)), mocap_framerate=np.array(fps))
    return root


def _prepared(out: Path) -> tuple[np.ndarray, dict]:
    arr = np.load(out / "train" / ARRAY_NAME)
    assert np.isfinite(arr).all()  # never a non-finite value in a prepared array
    return arr, json.loads((out / MANIFEST_NAME).read_text())


def test_one_nan_frame_keeps_the_other_59_bit_exact(tmp_path):
    poses = _poses()
    poses[17, 40] = np.nan  # column 40 is inside the body pose (3:66)
    report = prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {})
    arr, manifest = _prepared(tmp_path / "out")
    good = np.delete(np.arange(60), 17)
    expected = poses[good, 3:66].astype(np.float32)
    assert arr.shape == (59, 63) and arr.tobytes() == expected.tobytes()
    (entry,) = manifest["files"]
    assert (entry["frames_source"], entry["frames_kept"]) == (60, 59)
    assert (entry["frames_nonfinite"], entry["frames_dropped_nonfinite"]) == (1, 1)
    assert manifest["splits"]["train"]["frames_dropped_nonfinite"] == 1
    assert manifest["nonfinite"] == {"policy": "drop", "files": 1, "frames_source": 1, "frames_dropped": 1}
    assert manifest["config"]["nonfinite_frames"] == "drop" and manifest["skipped"] == []
    assert (report.nonfinite_dropped, report.nonfinite_files) == (1, 1)


def test_nan_outside_the_body_pose_is_ignored(tmp_path):
    poses = _poses()
    poses[5, 100] = np.nan  # a hand joint: not part of the prepared body pose
    prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {})
    arr, manifest = _prepared(tmp_path / "out")
    assert arr.shape == (60, 63) and manifest["nonfinite"]["frames_dropped"] == 0


def test_skip_file_policy_skips_with_the_reason(tmp_path):
    poses = _poses()
    poses[17, 40] = np.inf
    report = prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {}, nonfinite_frames="skip_file")
    assert report.skipped == [(REL, "key 'poses' has non-finite body-pose values in 1 of 60 frames "
                                    "(nonfinite_frames=skip_file)")]
    arr, manifest = _prepared(tmp_path / "out")
    assert arr.shape == (0, 63) and manifest["files"] == [] and manifest["nonfinite"]["policy"] == "skip_file"


@pytest.mark.parametrize("policy", ["drop", "skip_file"])
def test_all_nonfinite_file_is_skipped(tmp_path, policy):
    poses = _poses()
    poses[np.arange(60), 3 + np.arange(60)] = np.nan  # one NaN per frame, each in a different body-pose column
    report = prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {}, nonfinite_frames=policy)
    assert report.skipped == [(REL, "key 'poses' has non-finite body-pose values in all 60 frames")]
    assert _prepared(tmp_path / "out")[0].shape == (0, 63)


def test_values_beyond_float32_range_count_as_nonfinite(tmp_path):
    poses = _poses()
    poses[3, 10] = 1e300  # finite in float64, inf once stored as float32
    prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {})
    arr, manifest = _prepared(tmp_path / "out")
    assert arr.shape == (59, 63) and manifest["files"][0]["frames_dropped_nonfinite"] == 1


def test_changing_the_policy_reprepares(tmp_path):
    poses = _poses()
    poses[17, 40] = np.nan
    amass, out = _tree(tmp_path / "amass", poses), tmp_path / "out"
    assert not prepare_amass(amass, out, SPLITS, {}).noop
    assert prepare_amass(amass, out, SPLITS, {}, nonfinite_frames="drop").noop
    changed = prepare_amass(amass, out, SPLITS, {}, nonfinite_frames="skip_file")
    assert not changed.noop and changed.splits["train"].frames == 0 and len(changed.skipped) == 1
    assert prepare_amass(amass, out, SPLITS, {}, nonfinite_frames="skip_file").noop
    back = prepare_amass(amass, out, SPLITS, {})
    assert not back.noop and back.splits["train"].frames == 59


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown nonfinite_frames 'keep'.*drop, skip_file"):
        prepare_amass(_tree(tmp_path / "amass", _poses()), tmp_path / "out", SPLITS, {}, nonfinite_frames="keep")


# --- order: frame selection on the full timeline first, then the selected non-finite frames dropped ----------


def test_resample_selects_on_the_true_timeline_then_drops(tmp_path):
    poses = _poses()
    poses[4, 20] = np.nan  # selected at 30 fps out of 60 (even frames): dropped
    poses[5, 20] = np.nan  # not selected: counted in the source, not as a drop
    prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {}, frame_selection="resample",
                  target_fps=30.0)
    arr, manifest = _prepared(tmp_path / "out")
    kept = [f for f in range(0, 60, 2) if f != 4]  # frames keep their timestamps: nothing after frame 4 shifts
    assert arr.tobytes() == poses[kept, 3:66].astype(np.float32).tobytes()
    (entry,) = manifest["files"]
    assert (entry["frames_nonfinite"], entry["frames_dropped_nonfinite"], entry["frames_kept"]) == (2, 1, 29)


def test_vposer_selection_is_the_clean_files_minus_bad_frames(tmp_path):
    poses = _poses(200)
    clean_ids = select_frames(200, "vposer", seed=3, rel_path=REL)
    bad = [int(clean_ids[0]), int(clean_ids[7]), 0]  # two selected frames and one in the trimmed head
    poses[bad, 30] = np.nan
    prepare_amass(_tree(tmp_path / "amass", poses), tmp_path / "out", SPLITS, {}, frame_selection="vposer", seed=3)
    arr, manifest = _prepared(tmp_path / "out")
    kept = [f for f in clean_ids if f not in bad]
    assert len(kept) == len(clean_ids) - 2
    assert arr.tobytes() == poses[kept, 3:66].astype(np.float32).tobytes()
    assert manifest["files"][0]["frames_dropped_nonfinite"] == 2 and manifest["files"][0]["frames_nonfinite"] == 3


def test_choose_frames_order_directly():
    body = np.zeros((10, 63))
    body[[2, 3], 0] = np.nan
    choice = prep.choose_frames(body, 100.0, "resample", target_fps=50.0, seed=0, rel_path="x")
    np.testing.assert_array_equal(choice.frames, [0, 4, 6, 8])  # selection 0,2,4,6,8; 2 dropped; 3 never selected
    assert (choice.nonfinite, choice.dropped) == (2, 1)


def test_config_entry_point_reads_the_policy_with_a_default():
    data = SimpleNamespace(amass_dir=None, prepared_dir="p", splits={"train": ["CMU"]}, aliases={}, demo_dir="d",
                           frame_selection="all", vposer_keep_fraction=0.3, vposer_trim_fraction=0.1, target_fps=None,
                           seed=0)
    demo = SimpleNamespace(sequences_per_subject=1, subjects_per_dataset=1, frames_per_sequence=10, framerate=60.0,
                           seed=0)
    assert prep.prepare_kwargs_from_config(SimpleNamespace(data=data, demo=demo))["nonfinite_frames"] == "drop"
    data.nonfinite_frames = "skip_file"
    assert prep.prepare_kwargs_from_config(SimpleNamespace(data=data, demo=demo))["nonfinite_frames"] == "skip_file"
