"""The light open body model: SMPL's T-pose and axes, rigid bones, SMPL == SMPL-H on the body, exact LBS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from pose_prior.body_model import BodyOutput, load_body_model
from pose_prior.body_model.loading import build_smplx_model, open_model_paths, read_model_arrays

L_HIP, R_HIP, HEAD, NECK = 1, 2, 15, 12
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 16, 17, 18, 19, 20, 21


def _poses(n, dtype, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 63, generator=g, dtype=dtype)


def test_zero_pose_is_smpl_t_pose(light_body_model):
    out = light_body_model(torch.zeros(1, 63))
    assert isinstance(out, BodyOutput) and out.vertices.shape == (1, 1229, 3) and out.joints.shape == (1, 24, 3)
    j = out.joints[0].numpy()
    v = out.vertices[0].numpy()
    ids = light_body_model.vertex_ids
    # y up: head above neck above pelvis above the ankles; feet on a floor ~1.1 m below the pelvis
    assert j[HEAD, 1] > j[NECK, 1] > j[0, 1] > j[7, 1] and abs(j[7, 1] - j[8, 1]) < 1e-6
    np.testing.assert_allclose(j[0], [0.0, -0.22, 0.02], atol=0.01)
    # the subject's left at +x, mirror symmetric
    assert j[L_HIP, 0] > 0.03 and j[R_HIP, 0] < -0.03
    left, right = [1, 4, 7, 10, 13, 16, 18, 20, 22], [2, 5, 8, 11, 14, 17, 19, 21, 23]
    np.testing.assert_allclose(j[left] * [-1, 1, 1], j[right], atol=0.002)
    # arms horizontal along +x (left) and -x (right): shoulder, elbow, wrist on one horizontal line
    for chain, sign in (((L_SHOULDER, L_ELBOW, L_WRIST), 1), ((R_SHOULDER, R_ELBOW, R_WRIST), -1)):
        xs = sign * j[list(chain), 0]
        assert xs[0] > 0.1 and xs[1] > xs[0] + 0.2 and xs[2] > xs[1] + 0.2
        np.testing.assert_allclose(j[list(chain), 1:], np.broadcast_to(j[chain[0], 1:], (3, 2)), atol=0.002)
    # facing +z: nose in front of the head joint, toes in front of heels; thumbs forward of middle fingers
    assert v[ids["nose"], 2] > j[HEAD, 2] + 0.08
    for side in "LR":
        assert v[ids[f"{side}BigToe"], 2] > v[ids[f"{side}Heel"], 2] + 0.2
    for side in "lr":
        assert v[ids[f"{side}thumb"], 2] > v[ids[f"{side}middle"], 2] + 0.04
        assert v[ids[f"{side}middle"], 1] == pytest.approx(j[L_WRIST, 1], abs=0.06)  # hand flat, along x
    # realistic adult size
    assert 1.6 < v[:, 1].max() - v[:, 1].min() < 1.8 and 1.6 < v[:, 0].max() - v[:, 0].min() < 1.9


@pytest.mark.parametrize("with_betas", [False, True])
def test_bone_lengths_preserved_under_random_poses(light_body_model, with_betas):
    model = light_body_model
    n = 64
    betas = torch.randn(n, 10) if with_betas else None
    rest = model(torch.zeros(n, 63), betas=betas).joints
    posed = model(_poses(n, torch.float32), betas=betas, global_orient=torch.randn(n, 3),
                  transl=torch.randn(n, 3)).joints
    parents = model.parents[1:]
    def bone_lengths(joints):
        return (joints[:, 1:] - joints[:, parents]).norm(dim=-1)
    torch.testing.assert_close(bone_lengths(posed), bone_lengths(rest), rtol=1e-5, atol=0)
    assert (posed - rest).abs().max() > 0.1  # the pose did move the joints


def test_smpl_and_smplh_agree_on_the_body(light_body_model_f64, light_body_model_smplh_f64):
    pose = _poses(16, torch.float64, seed=1)
    betas = torch.randn(16, 10, dtype=torch.float64)
    a = light_body_model_f64(pose, betas=betas)
    b = light_body_model_smplh_f64(pose, betas=betas)
    # identical up to the float32 rounding of the stored (differently grouped) skinning weights
    torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.joints[:, :22], b.joints[:, :22], rtol=0, atol=1e-6)
    assert b.joints.shape == (16, 52, 3)
    # SMPL driven by 69 numbers with zero hands is the same body (general path vs merged-weight path)
    c = light_body_model_f64(torch.cat([pose, torch.zeros(16, 6, dtype=torch.float64)], 1), betas=betas)
    torch.testing.assert_close(c.vertices, a.vertices, rtol=0, atol=1e-12)


def test_float64_and_float32_agree(light_body_model, light_body_model_f64):
    pose = _poses(8, torch.float64, seed=2)
    out64 = light_body_model_f64(pose)
    assert out64.vertices.dtype == torch.float64
    out32 = light_body_model(pose.float())
    torch.testing.assert_close(out32.vertices.double(), out64.vertices, rtol=0, atol=2e-6)


def _numpy_lbs(arrays, pose_aa, orient_aa, betas):
    """An independent float64 SMPL forward pass: per-joint loop, scipy rotations, no smplx/torch."""
    v = arrays["v_template"].astype(np.float64) + arrays["shapedirs"].astype(np.float64) @ betas
    joints = arrays["J_regressor"].astype(np.float64) @ v
    parents = arrays["kintree_table"][0]
    rots = Rotation.from_rotvec(np.concatenate([orient_aa, pose_aa, np.zeros(6)]).reshape(-1, 3)).as_matrix()
    world = []
    for j in range(len(joints)):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0)
        world.append(local if j == 0 else world[parents[j]] @ local)
    skin = []
    for j, g in enumerate(world):
        a = g.copy()
        a[:3, 3] -= g[:3, :3] @ joints[j]
        skin.append(a)
    blended = np.einsum("vj,jab->vab", arrays["weights"].astype(np.float64), np.stack(skin))
    verts = np.einsum("vab,vb->va", blended[:, :3, :3], v) + blended[:, :3, 3]
    return verts, np.stack([g[:3, 3] for g in world])


def test_lbs_matches_an_independent_implementation(light_body_model_f64):
    arrays = read_model_arrays(open_model_paths("open-light", "smpl")[0])
    rng = np.random.default_rng(5)
    for with_betas in (False, True):
        pose, orient = 0.5 * rng.normal(size=63), 0.5 * rng.normal(size=3)
        betas = rng.normal(size=10) if with_betas else np.zeros(10)
        want_v, want_j = _numpy_lbs(arrays, pose, orient, betas)
        out = light_body_model_f64(torch.from_numpy(pose)[None], global_orient=torch.from_numpy(orient)[None],
                                   betas=torch.from_numpy(betas)[None] if with_betas else None)
        np.testing.assert_allclose(out.vertices[0].numpy(), want_v, rtol=0, atol=1e-6)  # float32 arrays
        np.testing.assert_allclose(out.joints[0].numpy(), want_j, rtol=0, atol=1e-6)


def test_neutral_fast_path_matches_smplx(light_body_model_f64):
    """betas=None uses one GEMM over precomputed weighted vertices: compare with smplx's own lbs."""
    arrays = read_model_arrays(open_model_paths("open-light", "smpl")[0])
    reference = build_smplx_model(arrays, "smpl", 10, torch.float64, keep_posedirs=True)
    pose = _poses(4, torch.float64, seed=3)
    full = torch.cat([pose, torch.zeros(4, 6, dtype=torch.float64)], 1)
    mats = torch.from_numpy(Rotation.from_rotvec(full.reshape(-1, 3).numpy()).as_matrix()).reshape(4, 23, 3, 3)
    ref = reference(body_pose=mats)
    out = light_body_model_f64(pose)
    torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.joints, ref.joints[:, :24], rtol=0, atol=1e-10)


def test_rotation_matrix_input_and_gradients(light_body_model_f64):
    model = light_body_model_f64
    pose = _poses(2, torch.float64, seed=4)
    mats = torch.from_numpy(Rotation.from_rotvec(pose.reshape(-1, 3).numpy()).as_matrix()).reshape(2, 21, 3, 3)
    torch.testing.assert_close(model(mats).vertices, model(pose).vertices, rtol=0, atol=1e-12)
    p = pose[:1, :12].clone().requires_grad_(True)
    b = torch.randn(1, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1229, 3, dtype=torch.float64)

    def f(p, b):
        return (model(torch.cat([p, pose[:1, 12:]], 1), betas=b).vertices * w).sum()

    assert torch.autograd.gradcheck(f, (p, b), eps=1e-6, atol=1e-6)


def test_bad_pose_shapes_are_refused(light_body_model):
    with pytest.raises(ValueError, match="body_pose"):
        light_body_model(torch.zeros(2, 66))
    smplh = load_body_model("open-light", "smplh")
    with pytest.raises(ValueError, match="63"):
        smplh(torch.zeros(2, 69))


def test_vertex_ids_are_on_the_mesh(light_body_model):
    ids = light_body_model.vertex_ids
    expected = {"nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
                "RSmallToe", "RHeel"} | {f"{s}{f}" for s in "lr" for f in ("thumb", "index", "middle", "ring", "pinky")}
    assert expected <= set(ids) and all(0 <= i < light_body_model.num_vertices for i in ids.values())
    assert len({ids[k] for k in expected}) == len(expected)
