"""HMR/SPIN/EFT network: checkpoint layout (331 entries), mean parameters, 6D convention, BatchNorm calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from pose_prior.hmr import (
    HMR,
    calibrate_batchnorm,
    default_mean_params,
    denormalize_image,
    load_hmr_checkpoint,
    load_mean_params,
    normalize_image,
)

# docs/formats.md#hmr-spin-and-eft-checkpoints: the regressor entries of SPIN's checkpoint['model'] beside torchvision's ResNet-50 names
HEAD_SHAPES = {
    "fc1.weight": (1024, 2205), "fc1.bias": (1024,), "fc2.weight": (1024, 1024), "fc2.bias": (1024,),
    "decpose.weight": (144, 1024), "decpose.bias": (144,), "decshape.weight": (10, 1024), "decshape.bias": (10,),
    "deccam.weight": (3, 1024), "deccam.bias": (3,), "init_pose": (1, 144), "init_shape": (1, 10), "init_cam": (1, 3),
}


def fabricated_spin_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """SPIN's 331-entry state dict built independently: torchvision resnet50 names minus fc.*, plus the heads."""
    g = torch.Generator().manual_seed(seed)
    trunk = torchvision.models.resnet50(weights=None).state_dict()
    state = {}
    for k, v in trunk.items():
        if k.startswith("fc."):
            continue
        state[k] = torch.randint(0, 100, (), generator=g) if v.dtype == torch.int64 else torch.randn(v.shape, generator=g)
    for k, shape in HEAD_SHAPES.items():
        state[k] = torch.randn(shape, generator=g) * 0.01
    return state


def rot6d_spin(x: np.ndarray) -> np.ndarray:
    """SPIN:utils/geometry.py rot6d_to_rotmat, in float64 numpy: (N, 6) -> (N, 3, 3)."""
    x = x.reshape(-1, 3, 2)
    a1, a2 = x[:, :, 0], x[:, :, 1]
    b1 = a1 / np.linalg.norm(a1, axis=1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


@pytest.fixture(scope="module")
def hmr() -> HMR:
    return HMR().eval()


def test_state_dict_has_spins_331_names_and_shapes(hmr: HMR) -> None:
    ours = {k: tuple(v.shape) for k, v in hmr.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in fabricated_spin_state().items()}
    assert len(theirs) == 331 and sum(k.endswith("num_batches_tracked") for k in theirs) == 53
    assert ours == theirs


@pytest.mark.parametrize("prefix", ["", "module."])
def test_fabricated_checkpoint_loads_with_nothing_missing_or_unexpected(tmp_path, hmr: HMR, prefix: str) -> None:
    state = fabricated_spin_state(seed=1)
    ckpt = {"model": {prefix + k: v for k, v in state.items()}, "optimizer": {"state": {}, "param_groups": []},
            "epoch": 3, "batch_idx": 10, "batch_size": 64, "dataset_perm": torch.arange(5), "total_step_count": 99}
    torch.save(ckpt, tmp_path / "model_checkpoint.pt")
    model = HMR()
    report = load_hmr_checkpoint(model, tmp_path / "model_checkpoint.pt", strict=True)
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == 331
    assert report.stripped_prefix == prefix
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_checkpoint_problems_are_reported(tmp_path) -> None:
    state = fabricated_spin_state()
    state.pop("deccam.bias")
    state["extra.weight"] = torch.zeros(2)
    torch.save({"model": state}, tmp_path / "a.pt")
    report = load_hmr_checkpoint(HMR(), tmp_path / "a.pt")
    assert report.missing == ["deccam.bias"] and report.unexpected == ["extra.weight"]
    with pytest.raises(ValueError, match="deccam.bias"):
        load_hmr_checkpoint(HMR(), tmp_path / "a.pt", strict=True)
    state = fabricated_spin_state()
    state["fc1.weight"] = torch.zeros(1024, 2048)  # HMR without the 157 parameter inputs
    torch.save({"model": state}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match=r"fc1.weight: checkpoint \(1024, 2048\) vs model \(1024, 2205\)"):
        load_hmr_checkpoint(HMR(), tmp_path / "b.pt")
    torch.save([1, 2], tmp_path / "c.pt")
    with pytest.raises(ValueError, match="'model' state dict"):
        load_hmr_checkpoint(HMR(), tmp_path / "c.pt")


def test_default_mean_params_and_zero_heads_return_them(hmr: HMR) -> None:
    mean = default_mean_params()
    R = rot6d_spin(mean["pose"].astype(np.float64))
    assert np.allclose(R[0], np.diag([1.0, -1.0, -1.0])) and np.allclose(R[1:], np.eye(3))
    model = HMR().eval()
    for head in (model.decpose, model.decshape, model.deccam):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    out = model.regress(torch.randn(2, 2048))
    assert torch.allclose(out.rotmat[:, 0], torch.diag(torch.tensor([1.0, -1.0, -1.0])).expand(2, 3, 3))
    assert torch.equal(out.cam, torch.tensor([[0.9, 0.0, 0.0]] * 2)) and torch.equal(out.betas, torch.zeros(2, 10))


def test_6d_matches_spins_rot6d_and_three_residual_iterations(hmr: HMR) -> None:
    feats = torch.randn(3, 2048)
    with torch.no_grad():
        out = hmr.regress(feats)
    ref = rot6d_spin(out.pose6d.double().numpy().reshape(-1, 6)).reshape(3, 24, 3, 3)
    assert np.allclose(out.rotmat.double().numpy(), ref, atol=1e-5)
    # the loop by hand (eval mode: dropout off)
    pose, shape, cam = hmr.init_pose.expand(3, -1), hmr.init_shape.expand(3, -1), hmr.init_cam.expand(3, -1)
    with torch.no_grad():
        for _ in range(3):
            h = hmr.fc2(hmr.fc1(torch.cat([feats, pose, shape, cam], 1)))
            pose, shape, cam = hmr.decpose(h) + pose, hmr.decshape(h) + shape, hmr.deccam(h) + cam
    assert torch.allclose(out.pose6d, pose, atol=1e-6) and torch.allclose(out.cam, cam, atol=1e-6)


def test_mean_params_file(tmp_path) -> None:
    mean = default_mean_params()
    np.savez(tmp_path / "smpl_mean_params.npz", shape=mean["shape"] + 0.5, pose=mean["pose"], cam=mean["cam"])
    loaded = load_mean_params(tmp_path / "smpl_mean_params.npz")
    assert np.allclose(loaded["shape"], 0.5) and loaded["pose"].dtype == np.float32
    assert torch.allclose(HMR(loaded).init_shape, torch.full((1, 10), 0.5))
    np.savez(tmp_path / "bad.npz", pose=mean["pose"], cam=mean["cam"])
    with pytest.raises(ValueError, match=r"missing key\(s\) \['shape'\]"):
        load_mean_params(tmp_path / "bad.npz")


def test_image_normalisation_round_trip() -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    x = normalize_image(img)
    assert abs(float(x[0, 2, 3]) - (img[2, 3, 0] / 255.0 - 0.485) / 0.229) < 1e-5
    assert np.array_equal(denormalize_image(x), img)


def test_batchnorm_calibration_sets_first_layer_statistics() -> None:
    torch.manual_seed(0)
    model = HMR()
    x = torch.randn(2, 3, 224, 224)
    calibrate_batchnorm(model, [x], max_batches=1)
    with torch.no_grad():
        y = model.conv1(x)  # (2, 64, 112, 112): bn1 saw exactly this
    assert torch.allclose(model.bn1.running_mean, y.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(model.bn1.running_var, y.var((0, 2, 3), unbiased=True), rtol=1e-3)
    assert model.bn1.momentum == 0.1 and model.training and model.bn1.training  # modes restored
