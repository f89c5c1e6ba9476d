"""VPoser v2: layout/state-dict names, decoder maths, loss terms by hand, checkpoint loading."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose_prior.priors.vposer.model import (
    VPOSER_PARAMETER_COUNT,
    VPoser,
    geodesic_angles,
    geodesic_matrot,
    joint_l1,
    kl_term,
    load_vposer_checkpoint,
    mesh_l1,
    vposer_batch_loss,
    vposer_loss,
)
from pose_prior.rotations import axis_angle_to_matrix

# docs/formats.md#vposer-checkpoints, verbatim
EXPECTED_SHAPES = {
    "encoder_net.1.weight": (63,),
    "encoder_net.1.bias": (63,),
    "encoder_net.1.running_mean": (63,),
    "encoder_net.1.running_var": (63,),
    "encoder_net.1.num_batches_tracked": (),
    "encoder_net.2.weight": (512, 63),
    "encoder_net.2.bias": (512,),
    "encoder_net.4.weight": (512,),
    "encoder_net.4.bias": (512,),
    "encoder_net.4.running_mean": (512,),
    "encoder_net.4.running_var": (512,),
    "encoder_net.4.num_batches_tracked": (),
    "encoder_net.6.weight": (512, 512),
    "encoder_net.6.bias": (512,),
    "encoder_net.7.weight": (512, 512),
    "encoder_net.7.bias": (512,),
    "encoder_net.8.mu.weight": (32, 512),
    "encoder_net.8.mu.bias": (32,),
    "encoder_net.8.logvar.weight": (32, 512),
    "encoder_net.8.logvar.bias": (32,),
    "decoder_net.0.weight": (512, 32),
    "decoder_net.0.bias": (512,),
    "decoder_net.3.weight": (512, 512),
    "decoder_net.3.bias": (512,),
    "decoder_net.5.weight": (126, 512),
    "decoder_net.5.bias": (126,),
}


def test_state_dict_names_shapes_and_parameter_count():
    model = VPoser()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == EXPECTED_SHAPES
    assert sum(p.numel() for p in model.parameters()) == VPOSER_PARAMETER_COUNT == 936_252


def upstream_rot6d(x: torch.Tensor) -> torch.Tensor:
    """human_body_prior ContinousRotReprDecoder, transcribed."""
    r = x.view(-1, 3, 2)
    b1 = F.normalize(r[:, :, 0], dim=1)
    b2 = F.normalize(r[:, :, 1] - torch.sum(b1 * r[:, :, 1], dim=1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=1)], dim=-1)


def test_decoder_matches_upstream_layer_by_layer():
    torch.manual_seed(1)
    model = VPoser().eval()
    z = torch.randn(5, 32)
    dec = model.decoder_net
    h = F.leaky_relu(dec[0](z), 0.01)
    h = F.leaky_relu(dec[3](h), 0.01)
    mats = upstream_rot6d(dec[5](h)).view(5, 21, 3, 3)
    out = model.decode(z)
    torch.testing.assert_close(out["pose_body_matrot"], mats.reshape(5, 21, 9), rtol=1e-5, atol=1e-6)
    assert out["pose_body"].shape == (5, 63)
    torch.testing.assert_close(axis_angle_to_matrix(out["pose_body"].view(5, 21, 3)), mats, atol=1e-5, rtol=0)


def test_encoder_matches_upstream_layer_by_layer():
    torch.manual_seed(2)
    model = VPoser().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for i in (1, 4):
            model.encoder_net[i].running_mean.normal_()
            model.encoder_net[i].running_var.uniform_(0.5, 2.0)
    x = torch.randn(6, 63)
    enc = model.encoder_net
    h = enc[2](enc[1](x))
    h = enc[7](enc[6](enc[4](F.leaky_relu(h, 0.01))))
    q = model.encode(x)
    torch.testing.assert_close(q.loc, enc[8].mu(h))
    torch.testing.assert_close(q.scale, F.softplus(enc[8].logvar(h)))
    out = model(x)
    assert set(out) >= {"pose_body", "pose_body_matrot", "poZ_body_mean", "poZ_body_std", "q_z"}


def test_kl_term_closed_form():
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]], dtype=torch.float64)
    sd = torch.tensor([[1.0, 0.5], [2.0, 1.0]], dtype=torch.float64)
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1)/2 - log s
    per = [[(s**2 + m**2 - 1) / 2 - math.log(s) for m, s in zip(mr, sr)] for mr, sr in zip(mu.tolist(), sd.tolist())]
    expected = sum(sum(row) for row in per) / 2  # sum over dims, mean over batch
    assert kl_term(torch.distributions.Normal(mu, sd)).item() == pytest.approx(expected, rel=1e-12)


def test_geodesic_against_known_angles():
    axes = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    axes = axes / axes.norm(dim=1, keepdim=True)
    angles = torch.tensor([0.3, 1.0, 2.5, 3.0], dtype=torch.float64)
    base = axis_angle_to_matrix(torch.tensor([[0.2, -0.4, 0.7]] * 4, dtype=torch.float64))
    r2 = base
    r1 = axis_angle_to_matrix(axes * angles[:, None]) @ base  # relative rotation of the given angle
    torch.testing.assert_close(geodesic_angles(r1, r2), angles, atol=1e-9, rtol=0)
    assert geodesic_matrot(r1.reshape(4, 9), r2.reshape(4, 9)).item() == pytest.approx(angles.mean().item())
    # identical rotations: ~0 with a finite gradient (clamped acos)
    r = base.clone().requires_grad_(True)
    g = geodesic_matrot(r, base.detach())
    g.backward()
    assert g.item() < 2e-3 and torch.isfinite(r.grad).all()


def test_mesh_and_joint_l1_by_hand():
    a = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    b = torch.tensor([[[1.5, 2.0, 1.0], [0.0, -1.0, 0.0]]])
    assert mesh_l1(a, b).item() == pytest.approx((0.5 + 0 + 2 + 0 + 1 + 0) / 6)
    assert joint_l1(a, b).item() == pytest.approx(3.5 / 6)


def test_vposer_loss_weights_and_schedule():
    q = torch.distributions.Normal(torch.full((2, 32), 0.5), torch.ones(2, 32))
    v, v2 = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)  # mesh L1 = 1
    j, j2 = torch.zeros(2, 3, 3), torch.full((2, 3, 3), 2.0)  # joint L1 = 2
    r1 = torch.eye(3).expand(2, 21, 3, 3)
    r2 = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0])).expand(2, 21, 3, 3)  # 1 rad everywhere
    early = vposer_loss(q, v, v2, r1, r2, j, j2, epoch=14)
    kl = 32 * 0.125
    assert early["loss_kl"].item() == pytest.approx(0.005 * kl)
    assert early["loss_mesh_rec"].item() == pytest.approx(4.0)
    assert early["matrot"].item() == pytest.approx(2.0, abs=1e-5)
    assert early["jtr"].item() == pytest.approx(4.0)
    assert early["loss_total"].item() == pytest.approx(0.005 * kl + 4 + 2 + 4, abs=1e-5)
    late = vposer_loss(q, v, v2, r1, r2, j, j2, epoch=15)
    assert set(late) == {"loss_kl", "loss_mesh_rec", "loss_total"}
    assert late["loss_total"].item() == pytest.approx(0.005 * kl + 4)
    assert "matrot" in vposer_loss(q, v, v2, r1, r2, j, j2, epoch=15, keep_extra_until=20)


def test_vposer_batch_loss_composes_body_model_and_terms():
    from collections import namedtuple

    Out = namedtuple("Out", "vertices joints")

    class Body(torch.nn.Module):
        def forward(self, pose):  # (B, 63) -> toy vertices/joints
            mats = axis_angle_to_matrix(pose.reshape(pose.shape[0], 21, 3))
            return Out(mats.reshape(pose.shape[0], 21 * 3, 3), mats[:, :, 0])

    torch.manual_seed(7)
    model = VPoser().eval()
    pose = torch.randn(4, 63) * 0.3
    torch.manual_seed(8)
    got = vposer_batch_loss(model, pose, Body(), epoch=0)
    torch.manual_seed(8)
    out = model(pose)
    rec, orig = Body()(out["pose_body"]), Body()(pose)
    mats = axis_angle_to_matrix(pose.reshape(4, 21, 3)).reshape(4, 21, 9)
    expected = vposer_loss(
        out["q_z"], rec.vertices, orig.vertices, out["pose_body_matrot"], mats, rec.joints, orig.joints, 0
    )
    for key in ("loss_kl", "loss_mesh_rec", "matrot", "jtr", "loss_total"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    got["loss_total"].backward()
    assert model.decoder_net[0].weight.grad is not None


# --- checkpoints ---------------------------------------------------------------------------------
def fabricated_lightning_checkpoint(model: VPoser) -> dict:
    """V02_05-style Lightning checkpoint: vp_model.-prefixed weights, bm_train.* extras, trainer keys."""
    state = {f"vp_model.{k}": v.clone() for k, v in model.state_dict().items()}
    state["bm_train.init_v_template"] = torch.randn(1, 10475, 3)
    state["bm_train.shapedirs"] = torch.randn(10475, 3, 16)
    state["bm_train.J_regressor"] = torch.randn(55, 10475)
    state["bm_train.kintree_table"] = torch.zeros(2, 55, dtype=torch.long)
    return {
        "epoch": 13,
        "global_step": 123456,
        "pytorch-lightning_version": "1.0.3",
        "state_dict": state,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
        "lr_schedulers": [{"best": 0.03}],
    }


def randomised_vposer(seed: int) -> VPoser:
    torch.manual_seed(seed)
    model = VPoser()
    with torch.no_grad():
        for i in (1, 4):
            model.encoder_net[i].running_mean.normal_()
            model.encoder_net[i].running_var.uniform_(0.5, 2.0)
            model.encoder_net[i].num_batches_tracked.fill_(777)
    return model.eval()


def assert_same_model(a: VPoser, b: VPoser) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    x, z = torch.randn(3, 63), torch.randn(3, 32)
    torch.testing.assert_close(a.encode(x).loc, b.encode(x).loc)
    torch.testing.assert_close(a.decode(z)["pose_body"], b.decode(z)["pose_body"])


def test_load_fabricated_lightning_checkpoint_file(tmp_path):
    model = randomised_vposer(3)
    path = tmp_path / "V02_05_epoch=13_val_loss=0.03.ckpt"
    torch.save(fabricated_lightning_checkpoint(model), path)
    loaded = load_vposer_checkpoint(path)
    assert not loaded.training
    assert_same_model(model, loaded)
    # also from an in-memory checkpoint and from a bare VPoser state dict
    assert_same_model(model, load_vposer_checkpoint(fabricated_lightning_checkpoint(model)))
    assert_same_model(model, load_vposer_checkpoint(model.state_dict()))


def test_checkpoint_with_lightning_classes_falls_back_to_restricted_loader(tmp_path):
    """Lightning 1.0 keys callback states by class and pickles AttributeDict hyperparameters."""
    pytest.importorskip("pytorch_lightning")
    from lightning_fabric.utilities.data import AttributeDict
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    model = randomised_vposer(4)
    ckpt = fabricated_lightning_checkpoint(model)
    ckpt["callbacks"] = {ModelCheckpoint: {"best_model_score": torch.tensor(0.03)}, EarlyStopping: {"wait_count": 3}}
    ckpt["hyper_parameters"] = AttributeDict(latentD=32, num_neurons=512)
    path = tmp_path / "lightning1.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):  # the fast path really is refused
        torch.load(path, weights_only=True)
    assert_same_model(model, load_vposer_checkpoint(path))


def test_checkpoint_with_foreign_class_is_refused(tmp_path):
    ckpt = fabricated_lightning_checkpoint(randomised_vposer(5))
    ckpt["evil"] = np.random.default_rng(0)  # a numpy Generator is not a tensor, array or container
    path = tmp_path / "foreign.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(Exception, match=r"(?s)foreign\.ckpt.*numpy\.random") as err:
        load_vposer_checkpoint(path)
    assert "weights_only=False" not in str(err.value)


class _RunsCode:
    """Unpickling this would call os.system; the loader must refuse it before calling anything."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = fabricated_lightning_checkpoint(randomised_vposer(7))
    ckpt["hyper_parameters"] = {"payload": _RunsCode(marker)}
    path = tmp_path / "malicious.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError) as err:
        load_vposer_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "system" in message
    assert "weights_only=False" not in message
    assert not marker.exists()


def test_checkpoint_with_omegaconf_hparams_and_callbacks_keyed_by_class(tmp_path):
    """omegaconf hyperparameters and class-keyed callback states become placeholders; keys stay distinct."""
    pytest.importorskip("pytorch_lightning")
    pytest.importorskip("omegaconf")
    from omegaconf import OmegaConf
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from pose_prior.priors.vposer.model import _load_checkpoint_file
    from pose_prior.safe_pickle import Placeholder

    model = randomised_vposer(8)
    ckpt = fabricated_lightning_checkpoint(model)
    ckpt["hyper_parameters"] = OmegaConf.create({"model_params": {"latentD": 32, "num_neurons": 512}})
    ckpt["callbacks"] = {ModelCheckpoint: {"best_model_score": torch.tensor(0.03)}, EarlyStopping: {"wait_count": 3}}
    path = tmp_path / "omegaconf.ckpt"
    torch.save(ckpt, path)
    assert_same_model(model, load_vposer_checkpoint(path))
    raw = _load_checkpoint_file(path)
    assert isinstance(raw["hyper_parameters"], Placeholder)
    assert sorted(k.pickled_class.rsplit(".", 1)[1] for k in raw["callbacks"]) == ["EarlyStopping", "ModelCheckpoint"]
    assert raw["callbacks"][next(k for k in raw["callbacks"] if "Early" in k.pickled_class)] == {"wait_count": 3}


def test_checkpoint_key_errors_are_reported(tmp_path):
    ckpt = fabricated_lightning_checkpoint(randomised_vposer(6))
    del ckpt["state_dict"]["vp_model.decoder_net.3.bias"]
    ckpt["state_dict"]["vp_model.decoder_net.9.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r"(?s)missing keys: \['decoder_net.3.bias'\].*unexpected keys: \['decoder_net.9.weight'\]"):
        load_vposer_checkpoint(ckpt)
    with pytest.raises(KeyError, match="no VPoser weights"):
        load_vposer_checkpoint({"state_dict": {"bm_train.x": torch.zeros(1)}})


def test_vposer_batch_loss_with_open_body_model_matrix_path():
    """Our BodyModel gets decoded matrices; the terms equal those of the axis-angle path."""
    from pose_prior.body_model import load_body_model

    body = load_body_model("open-light", model_type="smplh")
    torch.manual_seed(9)
    model = VPoser().eval()
    pose = torch.randn(3, 63) * 0.3
    torch.manual_seed(10)
    got = vposer_batch_loss(model, pose, body, epoch=0)
    torch.manual_seed(10)
    out = model(pose)
    rec, orig = body(out["pose_body"]), body(pose)
    expected = vposer_loss(
        out["q_z"], rec.vertices, orig.vertices, out["pose_body_matrot"],
        axis_angle_to_matrix(pose.reshape(3, 21, 3)).reshape(3, 21, 9), rec.joints, orig.joints, 0,
    )
    for key in ("loss_mesh_rec", "jtr", "loss_total"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6)
