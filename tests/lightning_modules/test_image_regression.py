"""Image regression through the frozen prior: what trains, what stays frozen, learning signal, runs and evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.eft_coco import EftImageDataset, read_eft_json
from datamodules.eft_demo import write_demo_images
from datamodules.h36m.images import H36MImageDataset
from experiments.config import CONFIGS_DIR, ConfigError, load_config
from experiments.regressor import evaluate_h36m_images, run_eval_regressor, run_train_regressor
from lightning_modules.image_regression import ImageRegressionModule
from pose_prior.body_model.h36m_regressor import load_h36m_regressor
from pose_prior.hmr import calibrate_batchnorm
from pose_prior.priors import LatentPrior, load_prior, save_prior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent

BODY = {"path": "open-light", "model_type": "smpl", "gender": "neutral"}


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("prior") / "prior.pt"
    save_prior(path, PoseGenerator(hidden=64), make_latent("S", 32), {"note": "random weights for tests"})
    return path


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return write_demo_images(tmp_path_factory.mktemp("demo"), "open-light", num_train=4, num_val=2, image_size=128)


@pytest.fixture(scope="module")
def batch(demo_root: Path) -> dict:
    ds = EftImageDataset(demo_root / "train.json", demo_root / "images")
    return next(iter(DataLoader(ds, batch_size=2)))  # ResNet-50 on CPU: 2 crops per test


def _module(prior_file: Path, **kw) -> ImageRegressionModule:
    prior = load_prior(prior_file)
    assert isinstance(prior, LatentPrior)
    torch.manual_seed(0)
    return ImageRegressionModule.from_prior(prior, body_model=BODY, mlp_hidden=[32], cache_features=True, **kw)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train(module: ImageRegressionModule, batch: dict, steps: int) -> None:
    """`steps` optimiser steps on one batch, outside a Trainer."""
    opt = module.configure_optimizers()
    for _ in range(steps):
        _, losses = module._step(batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()


@pytest.mark.parametrize("train_heads", [False, True])
def test_only_intended_parameters_train_and_the_generator_stays_bit_identical(prior_file, batch, train_heads) -> None:
    module = _module(prior_file, train_heads=train_heads, lr=1e-3)
    module.train()
    assert not module.hmr.layer1.training and not module.prior.training and module.mlp.training
    assert module.hmr.drop1.training == train_heads
    before = _snapshot(module)
    _train(module, batch, steps=2)
    heads = ("hmr.fc1.", "hmr.fc2.", "hmr.decpose.", "hmr.deccam.", "hmr.decshape.")
    grads = {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {n for n, _ in module.named_parameters() if n.startswith("mlp.") or (train_heads and n.startswith(heads))}
    assert grads == expected
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {k for k in changed if k.startswith("mlp.")} == {k for k in before if k.startswith("mlp.")}
    assert {k for k in changed if not k.startswith("mlp.")} == ({k for k in before if k.startswith(heads)} if train_heads else set())
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("prior.generator."))  # bit-identical
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("hmr.layer", "hmr.bn1", "hmr.conv1")))


def test_prediction_goes_through_the_projected_latent_and_the_generator(prior_file, batch) -> None:
    module = _module(prior_file).eval()
    with torch.no_grad():
        pred = module(batch["img"], batch["key"], batch["augmented"])
        assert torch.allclose(pred["z"].norm(dim=1), torch.ones(2), atol=1e-5)  # on the sphere (GAN-S)
        assert torch.allclose(pred["body_rot"], module.prior.decode_matrices(pred["z"]))
        out = module.body_model(pred["body_rot"], betas=pred["betas"], global_orient=pred["global_orient"])
        assert torch.allclose(pred["vertices"], out.vertices)
        kp = module.keypoint_map(out.vertices, out.joints)
        s, t = pred["cam"][:, :1, None], pred["cam"][:, None, 1:]
        assert torch.allclose(pred["keypoints2d"], s * kp[..., :2] + t)


def test_short_training_lowers_the_training_loss(prior_file, batch) -> None:
    module = _module(prior_file, train_heads=True, lr=2e-4)
    calibrate_batchnorm(module.hmr, [batch["img"]])  # as the run does for a trunk without pretrained weights
    with torch.no_grad():
        module.eval()
        start = {k: float(v) for k, v in module._step(batch)[1].items()}
    module.train()
    _train(module, batch, steps=40)
    module.eval()
    with torch.no_grad():
        end = {k: float(v) for k, v in module._step(batch)[1].items()}
    # a random-weight prior cannot reach the GT body pose (the pose term has a floor); keypoints can improve
    assert end["loss"] < 0.92 * start["loss"] and end["keypoints"] < 0.7 * start["keypoints"], (start, end)


@pytest.fixture(scope="module")
def vposer_prior_file(tmp_path_factory) -> Path:
    from pose_prior.priors import VPoserPrior
    from pose_prior.priors.vposer.model import VPoser

    torch.manual_seed(4)
    path = tmp_path_factory.mktemp("vposer") / "prior.pt"
    VPoserPrior(VPoser(num_neurons=64)).save(path, {"note": "random weights for tests"})
    return path


def test_a_vposer_prior_regresses_through_its_frozen_decoder(vposer_prior_file, batch) -> None:
    """Table 4's VPoser row: MLP -> z in R^32 (no projection for N(0, I)) -> VPoser's decoder, frozen."""
    module = _module(vposer_prior_file, lr=1e-3)
    assert module.hparams.prior_spec["kind"] == "vposer"
    module.eval()
    with torch.no_grad():
        pred = module(batch["img"], batch["key"], batch["augmented"])
        z = module.mlp(module._backbone_features(batch["img"], batch["key"], batch["augmented"]))
        torch.testing.assert_close(pred["z"], z, atol=0, rtol=0)  # identity projection
        decoded = module.prior.vposer.decoder_net(z).reshape(2, 21, 3, 3)  # VPoser's own decoder
        torch.testing.assert_close(pred["body_rot"], decoded, atol=0, rtol=0)
    module.train()
    assert not module.prior.training and not module.prior.vposer.encoder_net.training
    before = _snapshot(module)
    _train(module, batch, steps=2)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("prior."))  # weights and BN buffers
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("mlp."))
    # the hyperparameters rebuild the same VPoser (what load_from_checkpoint does), and its weights load strictly
    rebuilt = ImageRegressionModule(**dict(module.hparams))
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    rebuilt.eval()
    module.eval()
    with torch.no_grad():
        a = module(batch["img"], batch["key"], batch["augmented"])["vertices"]
        b = rebuilt(batch["img"], batch["key"], batch["augmented"])["vertices"]
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_gmm_prior_is_refused_with_the_reason(tmp_path) -> None:
    import numpy as np

    from experiments.regressor import load_regression_prior
    from pose_prior.priors import GMMPrior

    poses = np.random.default_rng(0).normal(scale=0.2, size=(200, 63))
    GMMPrior.fit(poses, n_components=2, max_iter=5).save(tmp_path / "gmm.pt")
    with pytest.raises(ConfigError, match="has no latent space"):
        load_regression_prior(str(tmp_path / "gmm.pt"))


def test_checkpoints_refer_to_the_trunk_file_instead_of_copying_it(tmp_path, prior_file, batch) -> None:
    """With hmr.checkpoint set, a regressor checkpoint stores the trunk file's path and SHA-256, not its
    ~100 MB of frozen tensors; loading reads them back (from a moved file too) and refuses another file."""
    import pytorch_lightning as pl

    from pose_prior.hmr import HMR, load_hmr_checkpoint

    torch.manual_seed(5)
    trunk_file = tmp_path / "model_checkpoint.pt"
    torch.save({"model": HMR().state_dict()}, trunk_file)  # stands in for SPIN's / EFT's file
    module = _module(prior_file, train_heads=True)
    module.use_trunk_file(str(trunk_file), load_hmr_checkpoint(module.hmr, trunk_file).loaded)
    _train(module, batch, steps=1)  # the heads and the MLP move away from the file's values
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": pl.__version__}
    module.on_save_checkpoint(checkpoint)
    saved = checkpoint["state_dict"]
    assert "hmr.layer4.2.conv3.weight" not in saved and "hmr.bn1.running_var" not in saved
    assert "hmr.fc1.weight" in saved and "mlp.0.weight" in saved  # trained: kept
    torch.save(checkpoint, tmp_path / "last.ckpt")
    full = sum(v.numel() for v in module.state_dict().values())
    assert sum(v.numel() for v in saved.values()) < 0.25 * full

    module.eval()
    with torch.no_grad():
        expected = module(batch["img"])["vertices"]
    loaded = ImageRegressionModule.load_from_checkpoint(str(tmp_path / "last.ckpt"), map_location="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["img"])["vertices"], expected, atol=0, rtol=0)

    moved = tmp_path / "elsewhere.pt"
    trunk_file.rename(moved)
    with pytest.raises(FileNotFoundError, match="hmr_trunk_path"):
        ImageRegressionModule.load_from_checkpoint(str(tmp_path / "last.ckpt"), map_location="cpu")
    ImageRegressionModule.load_from_checkpoint(str(tmp_path / "last.ckpt"), map_location="cpu", hmr_trunk_path=str(moved))
    torch.save({"model": HMR().state_dict()}, moved)  # another trunk under the same name
    with pytest.raises(ValueError, match="not the trunk this checkpoint was trained with"):
        ImageRegressionModule.load_from_checkpoint(str(tmp_path / "last.ckpt"), map_location="cpu",
                                                   hmr_trunk_path=str(moved))


def test_evaluation_of_ground_truth_meshes_is_zero(demo_root) -> None:
    """The eval plumbing (P2 crops, regressor, GT S, frame order) gives 0 mm for the true meshes."""
    from pose_prior.body_model import load_body_model

    bm = load_body_model("open-light", "smpl", dtype=torch.float64)
    data = read_eft_json(demo_root / "val.json")
    pose = torch.as_tensor(data.pose)
    gt_vertices = bm(pose[:, 1:], betas=torch.as_tensor(data.betas), global_orient=pose[:, 0]).vertices

    class Oracle:
        device = torch.device("cpu")

        def eval(self):
            return self

        def __call__(self, img):
            n = img.shape[0]
            out, self.seen = gt_vertices[self.seen: self.seen + n], self.seen + n
            return {"vertices": out, "cam": torch.zeros(n, 3)}

    oracle = Oracle()
    oracle.seen = 0
    ds = H36MImageDataset(demo_root / "h36m_p2_synthetic.npz", demo_root)
    reg = load_h36m_regressor(demo_root / "J_regressor_standin.npy", bm.num_vertices)
    res = evaluate_h36m_images(oracle, ds, reg, batch_size=1)
    assert res["mpjpe"].shape == (2,) and float(res["mpjpe"].max()) < 1e-6 and float(res["p_mpjpe"].max()) < 1e-6
    # and a wrong mesh (another frame's) is far off
    oracle.seen = 0
    gt_vertices = gt_vertices.flip(0)
    assert float(evaluate_h36m_images(oracle, ds, reg, batch_size=1)["mpjpe"].min()) > 20.0


def test_missing_prior_is_explained(tmp_path) -> None:
    cfg = load_config(CONFIGS_DIR / "regressor.yaml", [f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="outputs/runs/gan_s/prior.pt"):
        run_train_regressor(cfg)
    assert cfg.model.train_heads and cfg.model.cache_features  # the embedded default applies without data
    real = load_config(CONFIGS_DIR / "regressor.yaml", ["data.train_json=x.json"])
    assert not real.model.train_heads and real.data.augment.enabled


@pytest.mark.slow
def test_train_then_eval_run_folder(tmp_path, prior_file, demo_root) -> None:
    common = [f"data.demo_dir={demo_root}", "demo_images.num_train=4", "demo_images.num_val=2",
              "demo_images.image_size=128", "body_model.path=open-light", "logger.wandb_mode=offline"]
    cfg = load_config(CONFIGS_DIR / "regressor.yaml", [
        f"prior.path={prior_file}", f"output_dir={tmp_path / 'run'}", "trainer.max_epochs=2", "data.batch_size=2",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1", "hmr.calibrate_bn_batches=1", "grid_images=2",
        *common])
    run = run_train_regressor(cfg)
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "predictions" / "epoch0001.png").is_file()
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    keys = set().union(*(r.keys() for r in rows))
    assert {"train/loss_step", "train/keypoints_step", "val/loss", "val/mpjpe_lsp14_params_mm"} <= keys
    assert list((run / "wandb").glob("offline-run-*"))
    ecfg = load_config(CONFIGS_DIR / "eval_regressor.yaml", [f"checkpoint={run / 'checkpoints' / 'last.ckpt'}",
                                                                  "grid_images=2", *common])
    summary = run_eval_regressor(ecfg)
    saved = json.loads((run / "eval" / "regression.json").read_text())
    assert saved["frames"] == 2 and "SYNTHETIC" in saved["benchmark"] and saved["mpjpe_mm"] == summary["mpjpe_mm"]
    assert 0 < saved["p_mpjpe_mm"] <= saved["mpjpe_mm"] + 1e-9
    assert (run / "eval" / "predictions.png").is_file()
    # the checkpoint holds the prior's weights: bit-identical to the prior file's generator
    module = ImageRegressionModule.load_from_checkpoint(str(run / "checkpoints" / "last.ckpt"), map_location="cpu")
    ref = load_prior(prior_file).generator.state_dict()
    assert all(torch.equal(module.prior.generator.state_dict()[k], v) for k, v in ref.items())


def test_spins_extra_regressor_defines_the_extra_keypoints(tmp_path, prior_file) -> None:
    import numpy as np

    from pose_prior.body_model.keypoints import SPIN49_NAMES

    V = _module(prior_file).body_model.num_vertices
    extra = np.zeros((9, V))
    extra[np.arange(9), np.arange(9) * 7] = 1.0  # row r -> vertex 7r
    np.save(tmp_path / "J_regressor_extra.npy", extra)
    kmap = _module(prior_file, extra_regressor=str(tmp_path / "J_regressor_extra.npy")).keypoint_map
    right_hip_lsp = SPIN49_NAMES.index("Right Hip")  # 49-idx 27 = SMPL-54 idx 45 = extra row 0
    head_h36m = SPIN49_NAMES.index("Head (H36M)")  # 49-idx 43 = extra row 8
    assert kmap.vertex_regressor[right_hip_lsp].nonzero().flatten().tolist() == [0]
    assert kmap.vertex_regressor[head_h36m].nonzero().flatten().tolist() == [56]
    assert bool(kmap.available[head_h36m])  # unavailable on the open model without the file
    assert not bool(kmap.approximate[head_h36m])
