"""Keypoint layouts, index maps against SPIN's literal lists, and keypoints computed from a body model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_prior.body_model import keypoints as kp


def _swap_side(name: str) -> str:
    for a, b in (("Left", "Right"), ("left", "right")):
        if a in name:
            return name.replace(a, b)
        if b in name:
            return name.replace(b, a)
    for prefix in ("OP L", "OP R", "L", "R"):
        if name.startswith(prefix) and len(name) > len(prefix) and name[len(prefix)].isupper():
            other = prefix[:-1] + ("R" if prefix[-1] == "L" else "L")
            return other + name[len(prefix):]
    return name


@pytest.mark.parametrize("name", sorted(kp.LAYOUTS))
def test_flip_permutations_follow_the_names(name):
    layout = kp.get_layout(name)
    names = list(layout.joint_names)
    derived = [names.index(_swap_side(n)) for n in names]
    assert tuple(derived) == layout.flip_perm


def test_spin_literal_lists():
    # SPIN:constants.py J49_FLIP_PERM (literal)
    assert kp.J49_FLIP_PERM == (0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20,
                                21) + tuple(25 + i for i in kp.J24_FLIP_PERM)
    assert len(kp.SPIN49_NAMES) == 49 and kp.SPIN49_NAMES[25:] == kp.SPIN24_NAMES
    # S24[J24_TO_J14] picks the same joints as S17[H36M_TO_J14] given S24[global_idx] = S17
    S17 = np.arange(17 * 3, dtype=float).reshape(17, 3)
    S24 = np.zeros((24, 3))
    S24[list(kp.global_idx)] = S17
    np.testing.assert_array_equal(S24[list(kp.J24_TO_J14)], S17[list(kp.H36M_TO_J14)])
    np.testing.assert_array_equal(S24[list(kp.J24_TO_J17)], S17[list(kp.H36M_TO_J17)])
    # unused SPIN-24 rows in the P2 file are exactly [13, 15, 19, 20, 21, 22, 23]
    assert sorted(set(range(24)) - set(kp.global_idx)) == [13, 15, 19, 20, 21, 22, 23]
    # names agree across maps
    for k17, k24 in enumerate(kp.global_idx):
        h, s = kp.H36M17_NAMES[k17], kp.SPIN24_NAMES[k24]
        if "Left" in h or "Right" in h:
            assert h.split()[0] == s.split()[0] and h.split()[1] == s.split()[1]
    for k, j in enumerate(kp.joints_idx):
        coco = kp.COCO17_NAMES[k].replace("_", " ").title()
        assert kp.SPIN24_NAMES[j].startswith(coco)
    assert kp.LSP14_NAMES[13] == kp.SPIN24_NAMES[18] == "Head (H36M)"


def test_coco_and_h36m_conversions():
    rng = np.random.default_rng(0)
    coco = np.c_[rng.uniform(0, 500, size=(17, 2)), rng.integers(0, 3, size=17)]
    part = kp.coco17_to_spin24(coco)
    for k in range(17):
        j = kp.joints_idx[k]
        np.testing.assert_array_equal(part[j, :2], coco[k, :2])
        assert part[j, 2] == (1.0 if coco[k, 2] > 0 else 0.0)
    assert (part[[12, 13, 14, 15, 16, 17, 18], 2] == 0).all()
    d2 = rng.uniform(0, 1000, size=(5, 32, 2))
    part = kp.h36m32_to_spin24(d2)
    for k17 in range(17):
        np.testing.assert_array_equal(part[:, kp.global_idx[k17], :2], d2[:, kp.h36m_idx[k17]])
    assert part[:, list(kp.global_idx), 2].min() == 1 and part[:, [13, 15, 19, 20, 21, 22, 23], 2].max() == 0


def _toy_body(V=60, J=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, V, 3, generator=g, dtype=torch.float64), torch.randn(2, J, 3, generator=g, dtype=torch.float64)


SMPL_VERTEX_IDS = {n: i + 3 for i, n in enumerate(kp.SMPL_LANDMARK_VERTICES)}  # toy ids on a 60-vertex mesh


def test_keypoint_map_with_extra_regressor_is_spin_definition():
    verts, joints = _toy_body()
    extra = np.random.default_rng(1).dirichlet(np.ones(60), size=9)
    km = kp.build_keypoint_map("spin49", 60, SMPL_VERTEX_IDS, extra_regressor=extra, dtype=torch.float64)
    out = km(verts, joints)
    # SMPL-54 built by hand, then SPIN's JOINT_MAP selection
    smpl54 = torch.cat([
        joints,
        verts[:, [SMPL_VERTEX_IDS[n] for n in kp.SMPL_LANDMARK_VERTICES]],
        torch.einsum("kv,bvc->bkc", torch.from_numpy(extra), verts),
    ], 1)
    assert torch.allclose(out, smpl54[:, list(kp.SPIN49_FROM_SMPL54)])
    assert km.available.all() and not km.approximate.any()
    # spot checks by name
    assert torch.equal(out[:, kp.SPIN49.index("OP RShoulder")], joints[:, 17])
    assert torch.equal(out[:, kp.SPIN49.index("Left Eye")], verts[:, SMPL_VERTEX_IDS["leye"]])
    coco = kp.build_keypoint_map("coco17", 60, SMPL_VERTEX_IDS, extra_regressor=extra, dtype=torch.float64)
    assert torch.allclose(coco(verts, joints), out[:, [25 + j for j in kp.joints_idx]])


def test_keypoint_map_open_model_substitutes_and_missing():
    verts, joints = _toy_body()
    ids = {k: v for k, v in SMPL_VERTEX_IDS.items() if k not in ("lear", "rear")}
    km = kp.build_keypoint_map("spin24", 60, ids, substitutes=kp.OPEN_MODEL_EXTRA_SUBSTITUTES, dtype=torch.float64)
    out = km(verts, joints)
    names = kp.SPIN24_NAMES
    assert torch.equal(out[:, names.index("Right Hip")], joints[:, 2])  # LSP hip -> SMPL hip (approximate)
    assert km.approximate[names.index("Right Hip")] and not km.approximate[names.index("Right Knee")]
    assert torch.equal(out[:, names.index("Pelvis (MPII)")], joints[:, 0])
    for missing in ("Left Ear", "Right Ear", "Top of Head (LSP)", "Head (H36M)"):  # no ids in the json
        assert not km.available[names.index(missing)]
        assert torch.equal(out[:, names.index(missing)], torch.zeros(2, 3, dtype=torch.float64))
    ids["head_top"] = 50
    km = kp.build_keypoint_map("spin24", 60, ids, substitutes=kp.OPEN_MODEL_EXTRA_SUBSTITUTES, dtype=torch.float64)
    assert torch.equal(km(verts, joints)[:, names.index("Head (H36M)")], verts[:, 50])
    with pytest.raises(ValueError, match="outside"):
        kp.build_keypoint_map("spin24", 10, ids, substitutes=kp.OPEN_MODEL_EXTRA_SUBSTITUTES)


def test_keypoint_map_on_the_open_body_model():
    from pose_prior.body_model import load_body_model

    try:
        body = load_body_model("open-light")
    except FileNotFoundError:
        pytest.skip("open body model assets not built yet")
    km = kp.keypoint_map_for_body_model(body, "spin49")
    out = body(torch.zeros(2, 63))
    pts = km(out.vertices, out.joints)
    assert pts.shape == (2, 49, 3)
    assert torch.equal(pts[:, kp.SPIN49.index("OP MidHip")], out.joints[:, 0])
    for name, vid_key in (("OP Nose", "nose"), ("OP LBigToe", "LBigToe")):
        if vid_key in body.vertex_ids:
            assert torch.equal(pts[:, kp.SPIN49.index(name)], out.vertices[:, body.vertex_ids[vid_key]])
