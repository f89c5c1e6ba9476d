"""AMASS preparation: exact rows, splits/aliases, frame selection, bad files, no-op re-runs, interruptions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from datamodules.amass import prepare as prep
from datamodules.amass.prepare import (
    ARRAY_NAME,
    MANIFEST_NAME,
    build_split_lookup,
    prepare_amass,
    read_manifest,
    select_frames,
)
from experiments.schemas.data import DEFAULT_ALIASES, DEFAULT_SPLITS
from pose_prior.io import atomic_savez

REPO = Path(__file__).resolve().parents[3]


def _source_body(path: Path) -> np.ndarray:
    """Independent read of a source file's body pose, float64."""
    with np.load(path) as npz:
        return npz["poses"][:, 3:66] if path.name.endswith("_poses.npz") else npz["pose_body"]


def _check_rows_match_sources(prepared: Path, amass: Path) -> dict:
    """Every row of every split equals its source frame, in manifest order; returns the manifest.

    Expected rows, written out independently: the frame selection on the whole file, then the selected
    frames that are not finite (as float32) left out.
    """
    manifest = json.loads((prepared / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True
    cfg = manifest["config"]
    for split, info in manifest["splits"].items():
        arr = np.load(prepared / info["array"], mmap_mode="r")
        assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and arr.shape == (info["frames"], 63)
        assert np.isfinite(arr).all()
        entries = [e for e in manifest["files"] if e["split"] == split]
        assert len(entries) == info["files"]
        offset = 0
        for e in entries:  # contiguous, in manifest order
            assert e["row_offset"] == offset
            body = _source_body(amass / e["path"])
            assert e["frames_source"] == body.shape[0]
            frames = select_frames(body.shape[0], cfg["frame_selection"], keep_fraction=cfg["vposer_keep_fraction"],
                                   trim_fraction=cfg["vposer_trim_fraction"], target_fps=cfg["target_fps"],
                                   source_fps=e["framerate"], seed=cfg["seed"], rel_path=e["path"])
            with np.errstate(over="ignore"):
                finite = np.isfinite(body.astype(np.float32)).all(axis=1)
            assert e["frames_nonfinite"] == int((~finite).sum())
            assert e["frames_dropped_nonfinite"] == int((~finite[frames]).sum())
            frames = frames[finite[frames]]
            assert e["frames_kept"] == len(frames)
            np.testing.assert_array_equal(arr[offset:offset + len(frames)], body[frames].astype(np.float32))
            offset += len(frames)
        assert offset == arr.shape[0]
        assert info["frames_dropped_nonfinite"] == sum(e["frames_dropped_nonfinite"] for e in entries)
    assert manifest["nonfinite"]["frames_dropped"] == sum(e["frames_dropped_nonfinite"] for e in manifest["files"])
    assert manifest["nonfinite"]["policy"] == cfg["nonfinite_frames"]
    return manifest


def test_rows_equal_sources(prepared_amass, demo_amass_tree):
    manifest = _check_rows_match_sources(prepared_amass.prepared_dir, demo_amass_tree)
    sequences = sorted(p.relative_to(demo_amass_tree).as_posix() for p in demo_amass_tree.rglob("*.npz")
                       if p.name.endswith(("_poses.npz", "_stageii.npz")))
    assert sorted(e["path"] for e in manifest["files"]) == sequences and manifest["skipped"] == []
    for e in manifest["files"]:
        assert e["sha256"] == hashlib.sha256((demo_amass_tree / e["path"]).read_bytes()).hexdigest()
    assert any(e["format"] == "smplx" for e in manifest["files"])
    assert {k: v.frames for k, v in prepared_amass.splits.items()} == {"train": 960, "valid": 960, "test": 480}
    assert manifest["splits"]["train"]["frames"] == 960


def test_alias_folders_map_to_splits(prepared_amass):
    manifest = json.loads(prepared_amass.manifest_path.read_text())
    split_of = {e["dataset"]: e["split"] for e in manifest["files"]}
    assert split_of == {"CMU": "train", "BioMotionLab_NTroje": "train", "HumanEva": "valid", "HDM05": "valid",
                        "Transitions_mocap": "test"}
    assert "MPI_HDM05" not in manifest["missing_datasets"]["valid"]
    assert "BMLrub" not in manifest["missing_datasets"]["train"]
    assert "SFU" in manifest["missing_datasets"]["valid"]


def test_split_lookup_normalises_and_rejects_conflicts():
    lookup = build_split_lookup(DEFAULT_SPLITS, DEFAULT_ALIASES)
    for folder in ("MPI_HDM05", "mpihdm05", "HDM05", "Mpi-Hdm05"):
        assert lookup[prep.normalize_name(folder)] == ("valid", "MPI_HDM05")
    assert lookup[prep.normalize_name("BioMotionLab_NTroje")] == ("train", "BMLrub")
    assert lookup[prep.normalize_name("PosePrior")] == ("train", "MPI_Limits")
    assert prep.normalize_name("SomethingElse") not in lookup
    with pytest.raises(ValueError, match="HDM05.*split"):
        build_split_lookup({"train": ["HDM05"], "valid": ["MPI_HDM05"]}, DEFAULT_ALIASES)
    with pytest.raises(ValueError, match="folder name"):
        build_split_lookup({"../x": ["CMU"]}, {})


@pytest.mark.parametrize("n", [1, 9, 10, 100, 121, 1000, 4567])
def test_vposer_selection_count_and_range(n):
    ids = select_frames(n, "vposer", seed=0, rel_path="CMU/01/01_01_poses.npz")
    assert len(ids) == int(0.3 * 0.8 * n)
    assert len(np.unique(ids)) == len(ids) and (np.diff(ids) > 0).all()
    if len(ids):
        assert ids.min() >= int(0.1 * n) and ids.max() < int(0.9 * n)
    np.testing.assert_array_equal(ids, select_frames(n, "vposer", seed=0, rel_path="CMU/01/01_01_poses.npz"))
    if n >= 100:
        assert not np.array_equal(ids, select_frames(n, "vposer", seed=0, rel_path="CMU/01/01_02_poses.npz"))
        assert not np.array_equal(ids, select_frames(n, "vposer", seed=1, rel_path="CMU/01/01_01_poses.npz"))


def test_resample_nearest_frames():
    np.testing.assert_array_equal(select_frames(120, "resample", target_fps=30, source_fps=60), np.arange(0, 120, 2))
    ids = select_frames(101, "resample", target_fps=30, source_fps=100)
    brute = [int(np.argmin(np.abs(np.arange(101) / 100 - k / 30))) for k in range(31)]  # times 0 .. 1 s
    np.testing.assert_array_equal(ids, brute)
    assert len(select_frames(1000, "resample", target_fps=120, source_fps=120)) == 1000
    with pytest.raises(prep.SkipFile, match="frame rate"):
        select_frames(10, "resample", target_fps=30, source_fps=None)


@pytest.mark.parametrize("mode,kwargs,train_frames", [
    ("vposer", {}, 8 * int(0.24 * 120)),
    ("resample", {"target_fps": 30.0}, 8 * 60),
])
def test_prepared_selection_modes(demo_amass_tree, tmp_path, mode, kwargs, train_frames):
    report = prepare_amass(demo_amass_tree, tmp_path, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection=mode, **kwargs)
    assert report.splits["train"].frames == train_frames
    _check_rows_match_sources(tmp_path, demo_amass_tree)


def test_bad_files_are_skipped_and_listed(demo_amass_tree, prepared_amass, tmp_path):
    amass = tmp_path / "amass"
    shutil.copytree(demo_amass_tree, amass)
    good = sorted((amass / "CMU").rglob("*_poses.npz"))[0]
    raw = good.read_bytes()
    with np.load(good) as npz:
        data = dict(npz)
    bad_dir = amass / "CMU" / "99"
    bad_dir.mkdir()
    (bad_dir / "garbage_poses.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    (bad_dir / "truncated_poses.npz").write_bytes(raw[: len(raw) // 2])
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF  # inside the `poses` data: the zip CRC check fails on read
    (bad_dir / "bitflip_poses.npz").write_bytes(bytes(flipped))
    nan = data["poses"].copy()
    nan[5, 10] = np.nan
    atomic_savez(bad_dir / "nan_poses.npz", **{**data, "poses": nan})
    atomic_savez(bad_dir / "inf_poses.npz", **{**data, "poses": np.where(np.arange(156) == 20, np.inf, data["poses"])})
    atomic_savez(bad_dir / "wrongshape_poses.npz", **{**data, "poses": data["poses"][:, :100]})
    atomic_savez(bad_dir / "empty_poses.npz", **{**data, "poses": np.zeros((0, 156))})
    atomic_savez(bad_dir / "nokey_poses.npz", trans=data["trans"])
    atomic_savez(bad_dir / "strings_poses.npz", poses=np.array(["a", "b"]))
    (bad_dir / "text_poses.npz").write_text("frame,x,y\n0,0.1,0.2\n")
    (bad_dir / "lfs_poses.npz").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    (bad_dir / "empty_file_poses.npz").write_bytes(b"")
    np.save(bad_dir / "single.npy", data["poses"])
    (bad_dir / "single.npy").rename(bad_dir / "npy_poses.npz")
    np.savez(bad_dir / "objects_poses.npz", poses=np.array([{"a": 1}, None], dtype=object), trans=data["trans"])
    atomic_savez(amass / "HDM05" / "hdm9" / "bad_stageii.npz", pose_body=np.zeros((10, 60)))
    atomic_savez(amass / "SomethingElse" / "s1" / "x_poses.npz", **data)  # a sub-dataset in no split
    (amass / "CMU" / "01" / "notes.txt").write_text("not a sequence")

    report = prepare_amass(amass, tmp_path / "prepared", DEFAULT_SPLITS, DEFAULT_ALIASES)
    reasons = dict(report.skipped)
    expected = {
        "CMU/99/garbage_poses.npz": "not an npz archive (starts with b'",
        "CMU/99/truncated_poses.npz": "not a readable npz archive (corrupt or truncated)",
        "CMU/99/bitflip_poses.npz": "cannot read key 'poses'",
        "CMU/99/inf_poses.npz": "non-finite body-pose values in all 120 frames",
        "CMU/99/text_poses.npz": "not an npz archive (starts with b'frame,x,y",
        "CMU/99/lfs_poses.npz": "Git LFS pointer",
        "CMU/99/empty_file_poses.npz": "not an npz archive (empty file)",
        "CMU/99/npy_poses.npz": "not an npz archive (a single .npy array)",
        "CMU/99/objects_poses.npz": "key 'poses' holds pickled object arrays, refused (never loaded with allow_pickle)",
        "CMU/99/wrongshape_poses.npz": "shape (120, 100); expected (T, 156)",
        "CMU/99/empty_poses.npz": "no frames",
        "CMU/99/nokey_poses.npz": "missing key 'poses' (keys: trans)",
        "CMU/99/strings_poses.npz": "dtype <U1",
        "HDM05/hdm9/bad_stageii.npz": "shape (10, 60); expected (T, 63)",
    }
    assert set(reasons) == set(expected)
    for path, fragment in expected.items():
        assert fragment in reasons[path], (path, reasons[path])
    for reason in reasons.values():  # numpy's own advice ("load it unsafely using allow_pickle=") never leaks through
        assert "unsafe" not in reason and "allow_pickle=" not in reason and "pickle.load" not in reason, reason
    assert "pickled" not in reasons["CMU/99/text_poses.npz"] and "pickled" not in reasons["CMU/99/garbage_poses.npz"]
    # the file with one NaN frame is kept without it
    nan_entry = next(e for e in json.loads(report.manifest_path.read_text())["files"] if e["path"] == "CMU/99/nan_poses.npz")
    assert (nan_entry["frames_source"], nan_entry["frames_kept"], nan_entry["frames_dropped_nonfinite"]) == (120, 119, 1)
    assert report.nonfinite_dropped == 1 and report.nonfinite_files == 1
    assert report.unassigned == {"SomethingElse": 1}
    # the good files are all there, unchanged (train: plus the 119 finite frames of nan_poses)
    frames = {k: v.frames for k, v in prepared_amass.splits.items()}
    assert {k: v.frames for k, v in report.splits.items()} == {**frames, "train": frames["train"] + 119}
    manifest = _check_rows_match_sources(tmp_path / "prepared", amass)
    assert {e["path"] for e in manifest["skipped"]} == set(expected)
    assert all(e["sha256"] for e in manifest["skipped"])


def _mtimes(prepared: Path) -> dict:
    return {p.relative_to(prepared).as_posix(): p.stat().st_mtime_ns for p in prepared.rglob("*") if p.is_file()}


def test_rerun_is_noop_and_changes_reprepare(demo_amass_tree, tmp_path):
    amass = tmp_path / "amass"
    shutil.copytree(demo_amass_tree, amass)
    out = tmp_path / "prepared"
    first = prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES)
    assert not first.noop
    before = _mtimes(out)
    again = prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES)
    assert again.noop and _mtimes(out) == before
    assert {k: v.frames for k, v in again.splits.items()} == {k: v.frames for k, v in first.splits.items()}

    touched = sorted(amass.rglob("*_poses.npz"))[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes
    assert prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES).noop
    assert prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES, verify_checksums=True).noop
    assert _mtimes(out) == before

    # a changed source file re-prepares
    with np.load(touched) as npz:
        data = dict(npz)
    data["poses"] = data["poses"] * 0.5
    atomic_savez(touched, **data)
    assert not prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES).noop
    _check_rows_match_sources(out, amass)
    # ... also when size and mtime are forged back to the manifest's, with verify_checksums (sha256 of every file)
    entry = next(e for e in json.loads((out / MANIFEST_NAME).read_text())["files"]
                 if e["path"] == touched.relative_to(amass).as_posix())
    data["poses"] = data["poses"] * 2.0
    atomic_savez(touched, **data)
    os.utime(touched, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    assert touched.stat().st_size == entry["size"]
    assert prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES).noop  # the quick check trusts size + mtime
    assert not prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES, verify_checksums=True).noop
    _check_rows_match_sources(out, amass)

    # a different config re-prepares
    assert not prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="vposer").noop
    _check_rows_match_sources(out, amass)
    # a new file re-prepares; a deleted array re-prepares
    shutil.copy(touched, touched.with_name("copy_poses.npz"))
    assert not prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="vposer").noop
    (out / "test" / ARRAY_NAME).unlink()
    assert not prepare_amass(amass, out, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="vposer").noop
    _check_rows_match_sources(out, amass)


def test_interrupted_write_leaves_nothing_complete(demo_amass_tree, tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    prepare_amass(demo_amass_tree, out, DEFAULT_SPLITS, DEFAULT_ALIASES)
    real = prep.load_selected_rows
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # the 2nd file of the valid split (train has 4 files)
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(prep, "load_selected_rows", failing)
    with pytest.raises(OSError, match="simulated"):
        prepare_amass(demo_amass_tree, out, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="vposer")
    assert read_manifest(out) is None and not (out / MANIFEST_NAME).exists()
    assert not (out / "valid" / ARRAY_NAME).exists() and not (out / "test" / ARRAY_NAME).exists()
    assert not list(out.rglob("*.tmp"))  # the half-written array was removed
    from datamodules.amass.datamodule import AmassDataModule

    with pytest.raises(FileNotFoundError, match="no complete AMASS preparation"):
        AmassDataModule(out).setup("fit")

    monkeypatch.setattr(prep, "load_selected_rows", real)
    report = prepare_amass(demo_amass_tree, out, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="vposer")
    assert not report.noop
    _check_rows_match_sources(out, demo_amass_tree)


def test_killed_process_leaves_temp_only_and_rerun_finishes(demo_amass_tree, tmp_path):
    out = tmp_path / "prepared"
    script = textwrap.dedent(f"""
        import os
        from datamodules.amass import prepare as prep
        from experiments.schemas.data import DEFAULT_ALIASES, DEFAULT_SPLITS
        real, calls = prep.load_selected_rows, [0]
        def dying(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 3:
                os._exit(9)  # like SIGKILL: no cleanup runs
            return real(*args, **kwargs)
        prep.load_selected_rows = dying
        prep.prepare_amass({str(demo_amass_tree)!r}, {str(out)!r}, DEFAULT_SPLITS, DEFAULT_ALIASES)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 9
    assert list((out / "train").glob(f".{ARRAY_NAME}.*.tmp"))  # the partial array kept its temporary name
    assert not (out / "train" / ARRAY_NAME).exists() and read_manifest(out) is None

    report = prepare_amass(demo_amass_tree, out, DEFAULT_SPLITS, DEFAULT_ALIASES)
    assert not report.noop and not list(out.rglob("*.tmp"))
    _check_rows_match_sources(out, demo_amass_tree)


def test_bad_arguments_are_reported(demo_amass_tree, tmp_path):
    with pytest.raises(ValueError, match="unknown frame_selection 'every'.*all, vposer, resample"):
        prepare_amass(demo_amass_tree, tmp_path, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="every")
    with pytest.raises(ValueError, match="target_fps"):
        prepare_amass(demo_amass_tree, tmp_path, DEFAULT_SPLITS, DEFAULT_ALIASES, frame_selection="resample")
    with pytest.raises(FileNotFoundError, match="AMASS directory not found"):
        prepare_amass(tmp_path / "nowhere", tmp_path / "p", DEFAULT_SPLITS, DEFAULT_ALIASES)


def test_run_prepare_amass_on_demo_data(tmp_path, capsys):
    from datamodules.amass.prepare import run_prepare_amass
    from experiments.config import load_config

    overrides = [f"data.demo_dir={tmp_path / 'demo'}", f"data.prepared_dir={tmp_path / 'prepared'}",
                 "demo.frames_per_sequence=30", "demo.sequences_per_subject=1"]
    cfg = load_config(REPO / "experiments" / "configs" / "prepare_amass.yaml", overrides)
    report = run_prepare_amass(cfg)
    assert report.splits["train"].frames == 2 * 2 * 30 and report.splits["test"].files == 2
    printed = capsys.readouterr().out
    assert "train" in printed and "120" in printed
    _check_rows_match_sources(tmp_path / "prepared", tmp_path / "demo")
    assert run_prepare_amass(cfg).noop
    verify = load_config(REPO / "experiments" / "configs" / "prepare_amass.yaml", overrides + ["data.verify_checksums=true"])
    assert run_prepare_amass(verify).noop
