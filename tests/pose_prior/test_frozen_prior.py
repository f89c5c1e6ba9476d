"""GANPrior: frozen/eval, prior.pt round trip (weights_only), loader registry, inversion on the light model."""

from __future__ import annotations

import pickle

import pytest
import torch

from pose_prior.evaluation.distance import mesh_distance
from pose_prior.priors import GANPrior, load_prior, register_prior_kind, save_prior
from pose_prior.priors.file_format import PRIOR_LOADERS
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent


def _realistic_generator(seed: int = 0) -> PoseGenerator:
    """Untrained, seeded generator with a pose scale like a trained prior's (~0.13 rad per joint).

    Default initialisation maps z to arbitrary rotations; a trained prior outputs poses near the rest
    pose, so the output bias is the identity 6D and the output weights are scaled by 3.
    """
    torch.manual_seed(seed)
    g = PoseGenerator()
    with torch.no_grad():
        g.bodyprior_dec_out.weight.mul_(3.0)
        g.bodyprior_dec_out.bias.copy_(torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(21))
    return g


def test_frozen_prior_is_frozen_and_stays_in_eval() -> None:
    prior = GANPrior(PoseGenerator(), make_latent("S", 32))
    assert not any(p.requires_grad for p in prior.parameters())
    prior.train()
    assert not prior.training and not prior.generator.training and not prior.generator.dropout.training
    z = prior.sample(4)
    assert torch.equal(prior.decode(z), prior.decode(z))  # no dropout
    z.requires_grad_(True)
    prior.decode(z).sum().backward()  # z stays differentiable
    assert z.grad is not None and all(p.grad is None for p in prior.parameters())
    assert prior.latent_dim == 32 and prior.latent_type == "S"
    torch.testing.assert_close(prior.sample(8).norm(dim=-1), torch.ones(8))


def test_prior_file_round_trip(tmp_path) -> None:
    gen = _realistic_generator(1)
    latent = make_latent("U", 32)
    path = tmp_path / "prior.pt"
    save_prior(path, gen, latent, {"config": {"lr": 2e-4, "betas": (0.5, 0.999)}, "data": {"frames": 123}})
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["kind"] == "gan" and raw["latent"] == {"name": "U", "dim": 32}
    assert raw["provenance"]["config"]["betas"] == [0.5, 0.999] and "date" in raw["provenance"]
    prior = load_prior(path)
    assert isinstance(prior, GANPrior) and prior.latent_type == "U"
    z = torch.rand(16, 32) * 2 - 1
    gen.eval()
    assert torch.equal(prior.decode_matrices(z), gen(z))
    assert torch.equal(prior.decode(z), gen.body_pose(z))
    assert prior.provenance["data"] == {"frames": 123}


def test_load_prior_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)
    with pytest.raises(ValueError, match="not a prior file"):
        load_prior(bad)
    pickled = tmp_path / "obj.pt"
    with open(pickled, "wb") as fh:
        pickle.dump({"format": "pose_prior", "obj": object()}, fh)
    with pytest.raises(ValueError, match="refused without running them"):
        load_prior(pickled)
    unknown = tmp_path / "vp.pt"
    torch.save({"format": "pose_prior", "format_version": 1, "kind": "no-such-kind"}, unknown)
    with pytest.raises(ValueError, match="unknown prior kind .no-such-kind."):
        load_prior(unknown)
    with pytest.raises(TypeError, match="provenance.cfg"):
        save_prior(tmp_path / "p.pt", PoseGenerator(), make_latent("S"), {"cfg": object()})


def test_loader_registry_dispatches_on_kind(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"format": "pose_prior", "format_version": 1, "kind": "test-kind", "x": torch.ones(2)}, path)
    register_prior_kind("test-kind", lambda payload, p: payload["x"] * 2)
    try:
        assert torch.equal(load_prior(path), torch.full((2,), 2.0))
    finally:
        PRIOR_LOADERS.pop("test-kind")


def test_invert_recovers_decoded_bodies_within_1mm(light_body_model) -> None:
    prior = GANPrior(_realistic_generator(0), make_latent("S", 32))
    z_true = prior.sample(4, generator=torch.Generator().manual_seed(1))
    pose = prior.decode(z_true)
    z, d = prior.invert(pose, light_body_model, return_distance=True)
    verts = lambda zz: light_body_model(prior.decode(zz)).vertices  # noqa: E731
    target = verts(z_true)
    recovered = mesh_distance(verts(z), target)  # through the axis-angle interface, independently
    assert (recovered < 1e-3).all(), recovered  # metres: < 1 mm
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(4))
    # the start far away was really far: the nearest candidate is tens of mm off
    assert mesh_distance(verts(prior.sample(4, generator=torch.Generator().manual_seed(2))), target).min() > 5e-3
    # a sample's result does not depend on its batch-mates
    z_solo, d_solo = prior.invert(pose[2:3], light_body_model, return_distance=True)
    assert d_solo.item() < 1e-3
    torch.testing.assert_close(z_solo[0], z[2], atol=1e-3, rtol=0)


def test_nonfinite_priors_are_neither_written_nor_loaded(tmp_path) -> None:
    gen = PoseGenerator(latent_dim=8, hidden=16)
    with torch.no_grad():
        gen.bodyprior_dec_fc2.weight[3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"not written: non-finite values .*generator.state_dict.bodyprior_dec_fc2.weight"):
        save_prior(tmp_path / "nan.pt", gen, make_latent("S", 8))
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even a temporary file
    # a file written by other means is refused on loading, with the reason
    good = PoseGenerator(latent_dim=8, hidden=16)
    save_prior(tmp_path / "ok.pt", good, make_latent("S", 8))
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)
    payload["generator"]["state_dict"]["bodyprior_dec_out.bias"][0] = float("inf")
    torch.save(payload, tmp_path / "inf.pt")
    with pytest.raises(ValueError, match="refused: non-finite weights .*bodyprior_dec_out.bias.*diverged"):
        load_prior(tmp_path / "inf.pt")


def test_wrong_paths_get_true_hints(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    save_prior(run / "prior.pt", PoseGenerator(latent_dim=8, hidden=16), make_latent("S", 8))
    with pytest.raises(FileNotFoundError, match=f"is a directory, not a prior file; pass {run / 'prior.pt'}"):
        load_prior(run)
    torch.save({"state_dict": {}, "epoch": 3}, run / "last.ckpt")
    with pytest.raises(ValueError, match="A Lightning checkpoint is not a prior file"):
        load_prior(run / "last.ckpt")
    (run / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as info:
        load_prior(run / "notes.txt")
    assert "not a file torch.save wrote" in str(info.value) and "weights_only=False" not in str(info.value)
    assert "Lightning" not in str(info.value)  # the checkpoint hint only for a .ckpt
