"""load_body_model on licensed-format files (fabricated here), the convert command, and smplx agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_prior.body_model import load_body_model
from pose_prior.body_model.convert import main as convert_main
from pose_prior.body_model.loading import build_smplx_model, open_model_paths, read_model_arrays
from tests.pose_prior.body_model.chumpy_fakes import write_chumpy_smpl_pkl


def _open_arrays(model_type: str) -> dict[str, np.ndarray]:
    return read_model_arrays(open_model_paths("open-light", model_type)[0])


def _random_inputs(model, batch=3, seed=0, pose_dim=63):
    g = torch.Generator().manual_seed(seed)
    pose = 0.4 * torch.randn(batch, pose_dim, generator=g, dtype=model.dtype)
    betas = torch.randn(batch, 10, generator=g, dtype=model.dtype)
    orient = 0.5 * torch.randn(batch, 3, generator=g, dtype=model.dtype)
    transl = torch.randn(batch, 3, generator=g, dtype=model.dtype)
    return pose, betas, orient, transl


def _mats(aa: torch.Tensor) -> torch.Tensor:
    """(B, 3K) axis-angle -> (B, K, 3, 3) via scipy (independent of the model's roma path)."""
    from scipy.spatial.transform import Rotation

    b = aa.shape[0]
    m = Rotation.from_rotvec(aa.reshape(-1, 3).numpy()).as_matrix()
    return torch.from_numpy(m).reshape(b, -1, 3, 3).to(aa.dtype)


def _posedirs(arrays, seed=3):
    v = arrays["v_template"].shape[0]
    j = arrays["kintree_table"].shape[1]
    return 0.01 * np.random.default_rng(seed).normal(size=(v, 3, 9 * (j - 1)))


@pytest.fixture(scope="module")
def smpl_pkl(tmp_path_factory):
    """A chumpy-style SMPL pickle holding the light open model's arrays plus random pose blend shapes."""
    arrays = _open_arrays("smpl")
    path = tmp_path_factory.mktemp("smpl") / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    write_chumpy_smpl_pkl(arrays, path, posedirs=_posedirs(arrays))
    return path


def test_chumpy_pkl_gives_the_arrays_it_holds(smpl_pkl):
    ref = _open_arrays("smpl")
    got = read_model_arrays(smpl_pkl)
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "f"):
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-7, err_msg=key)
    np.testing.assert_allclose(got["posedirs"], _posedirs(ref), rtol=0, atol=0)
    assert got["J_regressor"].shape == ref["J_regressor"].shape and isinstance(got["J_regressor"], np.ndarray)


def test_pkl_model_matches_smplx_forward(smpl_pkl):
    """BodyModel (merged hand weights, one-GEMM skinning) vs smplx's own lbs, with nonzero posedirs."""
    model = load_body_model(smpl_pkl, "smpl", dtype=torch.float64)
    assert model.has_posedirs and model.num_joints == 24 and model.num_vertices == 1229
    reference = build_smplx_model(read_model_arrays(smpl_pkl), "smpl", 10, torch.float64)
    for pose_dim in (63, 69):
        pose, betas, orient, transl = _random_inputs(model, pose_dim=pose_dim)
        out = model(pose, betas=betas, global_orient=orient, transl=transl)
        full_pose = pose if pose_dim == 69 else torch.cat([pose, torch.zeros(3, 6, dtype=pose.dtype)], 1)
        ref = reference(betas=betas, body_pose=_mats(full_pose), global_orient=_mats(orient), transl=transl)
        torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-10)
        torch.testing.assert_close(out.joints, ref.joints[:, :24], rtol=0, atol=1e-10)


def test_directory_lookup_and_gender_file_names(smpl_pkl):
    model = load_body_model(smpl_pkl.parent, "smpl", gender="neutral")
    assert model.num_vertices == 1229
    with pytest.raises(FileNotFoundError, match="smpl.is.tue.mpg.de"):
        load_body_model(smpl_pkl.parent, "smpl", gender="female")


def test_missing_file_says_where_to_get_models(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_body_model(tmp_path / "SMPL_NEUTRAL.pkl")
    msg = str(err.value)
    assert "smpl.is.tue.mpg.de" in msg and "mano.is.tue.mpg.de" in msg and '"open"' in msg


def test_convert_command_round_trips(smpl_pkl, tmp_path, capsys):
    out = tmp_path / "converted" / "smpl_neutral.npz"
    assert convert_main([str(smpl_pkl), str(out)]) == 0
    with np.load(out, allow_pickle=False) as data:  # plain arrays only
        converted = {k: data[k] for k in data.files}
    original = read_model_arrays(smpl_pkl)
    for key, value in original.items():
        np.testing.assert_array_equal(converted[key], value, err_msg=key)
    assert str(converted["bs_type"]) == "lrotmin"
    a, b = load_body_model(smpl_pkl, dtype=torch.float64), load_body_model(out, dtype=torch.float64)
    pose, betas, *_ = _random_inputs(a)
    torch.testing.assert_close(a(pose, betas).vertices, b(pose, betas).vertices, rtol=0, atol=0)
    assert convert_main([str(tmp_path / "nope.pkl"), str(tmp_path / "x.npz")]) == 2


def test_smplh_npz_like_amass(tmp_path):
    """An SMPL-H model.npz with AMASS's extra keys (strings, an object array) and hand PCA keys."""
    arrays = _open_arrays("smplh")
    extra = {"posedirs": _posedirs(arrays), "bs_style": np.array("lbs"),
             "pose_training_info": np.array([{"a": 1}], dtype=object),
             "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
             "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45)}
    path = tmp_path / "smplh" / "neutral" / "model.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, **{k: v for k, v in arrays.items() if not k.startswith("hands")}, **extra)
    model = load_body_model(tmp_path / "smplh", "smplh", dtype=torch.float64)  # directory lookup
    assert model.num_joints == 52 and model.has_posedirs
    reference = build_smplx_model(read_model_arrays(path), "smplh", 10, torch.float64)
    pose, betas, orient, transl = _random_inputs(model)
    out = model(pose, betas=betas, global_orient=orient, transl=transl)
    hands = torch.eye(3, dtype=torch.float64).expand(3, 15, 3, 3)
    ref = reference(betas=betas, body_pose=_mats(pose), global_orient=_mats(orient), transl=transl,
                    left_hand_pose=hands, right_hand_pose=hands)
    torch.testing.assert_close(out.vertices, ref.vertices, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.joints, ref.joints[:, :52], rtol=0, atol=1e-10)


def test_model_type_must_match_the_file(smpl_pkl):
    with pytest.raises(ValueError, match="24 joints"):
        load_body_model(smpl_pkl, "smplh")
    with pytest.raises(ValueError, match="52 joints"):
        load_body_model(open_model_paths("open-light", "smplh")[0], "smpl")
