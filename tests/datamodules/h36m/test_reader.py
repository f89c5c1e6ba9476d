"""H3.6M P2 reader on files fabricated with exactly SPIN's published layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.h36m.reader import (
    H36MEvalDataset,
    H36MFileError,
    read_h36m_p2,
    write_keypoint_file,
)
from pose_prior.body_model.h36m_regressor import load_h36m_regressor
from pose_prior.body_model.keypoints import H36M17_TO_SPIN24, h36m32_to_spin24


def _p2_lists(N: int, seed: int = 0):
    """Python lists as SPIN's preprocessing builds them before np.savez."""
    rng = np.random.default_rng(seed)
    imgname, center, scale, S = [], [], [], []
    for i in range(N):
        imgname.append(f"images/S9_Directions_1.60457274_{5 * i + 1:06d}.jpg")
        center.append(list(rng.uniform(300, 700, size=2)))
        scale.append(float(rng.uniform(2.0, 4.5)))
        S17 = rng.normal(size=(17, 3)) * 0.3
        S17 -= S17[0]
        S24 = np.zeros((24, 4))
        S24[list(H36M17_TO_SPIN24), :3] = S17
        S24[list(H36M17_TO_SPIN24), 3] = 1
        S.append(S24)
    return imgname, center, scale, S


def _write_p2(path, N=7, **extra):
    imgname, center, scale, S = _p2_lists(N)
    np.savez(path, imgname=imgname, center=center, scale=scale, S=S, **extra)
    return imgname, np.array(S)


def test_published_layout_without_keypoints_is_a_clear_error(tmp_path):
    p = tmp_path / "h36m_valid_protocol2.npz"
    _write_p2(p)
    with np.load(p) as f:  # what the fabricated file really is
        assert f.files == ["imgname", "center", "scale", "S"]
        assert f["imgname"].dtype.kind == "U" and f["S"].dtype == np.float64 and f["S"].shape == (7, 24, 4)
    with pytest.raises(H36MFileError, match=r"no 2D keypoints.*part\[global_idx, :2\] = D2\[h36m_idx\]"):
        read_h36m_p2(p)


def test_keypoints_in_same_file_and_values(tmp_path):
    p = tmp_path / "p2.npz"
    part = np.random.default_rng(1).uniform(0, 1000, size=(7, 24, 3))
    names, S = _write_p2(p, part=part)
    data = read_h36m_p2(p)
    assert data.layout == "spin24" and data.keypoint_source.endswith(":part")
    np.testing.assert_array_equal(data.keypoints, part)
    np.testing.assert_array_equal(data.S, S)
    assert data.imgname.tolist() == names and len(data) == 7
    assert (data.S[:, [13, 15, 19, 20, 21, 22, 23]] == 0).all()
    ds = H36MEvalDataset(data)
    item = ds[3]
    assert item["S"].dtype == torch.float64 and torch.allclose(item["keypoints"], torch.from_numpy(part[3]).float())


def test_separate_keypoint_file_keyed_by_imgname(tmp_path):
    p = tmp_path / "p2.npz"
    names, _ = _write_p2(p)
    rng = np.random.default_rng(2)
    d2 = rng.uniform(0, 1000, size=(7, 32, 2))  # raw H3.6M D2_Positions frames, in the P2 order
    part = h36m32_to_spin24(d2)
    perm = rng.permutation(7)
    kp_file = tmp_path / "kp.npz"
    write_keypoint_file(kp_file, np.array(names)[perm], part[perm])  # shuffled, matched by name
    data = read_h36m_p2(p, keypoints_path=kp_file)
    np.testing.assert_array_equal(data.keypoints, part)
    # without imgname: same order required
    np.savez(tmp_path / "kp_plain.npz", openpose=np.ones((7, 25, 3)))
    d = read_h36m_p2(p, keypoints_path=tmp_path / "kp_plain.npz")
    assert d.layout == "openpose25" and d.keypoints.shape == (7, 25, 3)
    np.savez(tmp_path / "kp_short.npz", part=np.ones((6, 24, 3)))
    with pytest.raises(H36MFileError, match="6 frames"):
        read_h36m_p2(p, keypoints_path=tmp_path / "kp_short.npz")
    write_keypoint_file(tmp_path / "kp_missing.npz", np.array(names)[:-1], part[:-1])
    with pytest.raises(H36MFileError, match="no keypoints for 1 of 7"):
        read_h36m_p2(p, keypoints_path=tmp_path / "kp_missing.npz")
    np.savez(tmp_path / "kp_none.npz", foo=np.ones(3))
    with pytest.raises(H36MFileError, match="kp_none.npz: no 'part' or 'openpose'"):
        read_h36m_p2(p, keypoints_path=tmp_path / "kp_none.npz")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.pop("S"), r"missing key\(s\) \['S'\]"),
        (lambda d: d.update(S=np.zeros((7, 17, 3))), r"'S' must have shape \(7, 24, 4\)"),
        (lambda d: d.update(center=np.zeros((7, 3))), r"'center' must have shape \(7, 2\)"),
        (lambda d: d.update(imgname=np.arange(7)), "'imgname' must hold strings"),
        (lambda d: d.update(part=np.zeros((7, 24, 2))), r"'part' must have shape \(N, 24, 3\)"),
        (lambda d: d.update(S=np.where(np.arange(24)[None, :, None] == 13, 1.0, d["S"])), "rows .* all zero"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, change, message):
    imgname, center, scale, S = _p2_lists(7)
    arrays = dict(imgname=np.array(imgname), center=np.array(center), scale=np.array(scale), S=np.array(S),
                  part=np.zeros((7, 24, 3)))
    change(arrays)
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(H36MFileError, match="bad.npz") as err:
        read_h36m_p2(p)
    assert err.match(message)


def test_object_imgname_is_refused_without_pickle(tmp_path):
    imgname, center, scale, S = _p2_lists(3)
    p = tmp_path / "obj.npz"
    np.savez(p, imgname=np.array(imgname, dtype=object), center=center, scale=scale, S=S)
    with pytest.raises(H36MFileError, match="obj.npz"):
        read_h36m_p2(p)


def test_j_regressor_fortran_order(tmp_path):
    rng = np.random.default_rng(3)
    reg = np.asfortranarray(rng.dirichlet(np.ones(50), size=17))
    p = tmp_path / "J_regressor_h36m.npy"
    np.save(p, reg)
    with open(p, "rb") as fh:
        assert b"'fortran_order': True" in fh.read(128)  # the published layout
    out = load_h36m_regressor(p, num_vertices=50)
    assert out.flags["C_CONTIGUOUS"] and out.dtype == np.float64
    np.testing.assert_array_equal(out, reg)
    with pytest.raises(ValueError, match="50 vertex columns but the body model has 6890"):
        load_h36m_regressor(p, num_vertices=6890)
    np.save(tmp_path / "bad.npy", reg[:16])
    with pytest.raises(ValueError, match=r"bad.npy: expected shape \(17, V\)"):
        load_h36m_regressor(tmp_path / "bad.npy")
    np.save(tmp_path / "nan.npy", np.where(reg == reg.max(), np.nan, reg))
    with pytest.raises(ValueError, match="nan.npy: contains non-finite"):
        load_h36m_regressor(tmp_path / "nan.npy")
    np.save(tmp_path / "obj.npy", np.array([None] * 17), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy: not a plain .npy"):
        load_h36m_regressor(tmp_path / "obj.npy")
