"""The authors' checkpoints (training checkpoint and bare generator state dict) convert into prior files
that reproduce the authors' networks' outputs."""

from __future__ import annotations

import pytest
import torch

from bench.authors_reference import AuthorsDiscriminator, AuthorsGenerator
from pose_prior.priors import load_prior
from pose_prior.priors.gan.authors import convert_authors_checkpoint, discriminator_from_state, main
from pose_prior.rotations import axis_angle_to_matrix


@pytest.fixture
def authors_nets():
    torch.manual_seed(3)
    return AuthorsGenerator(num_neurons=64, latentD=16).eval(), AuthorsDiscriminator(hidden_poseall=64).eval()


def test_training_checkpoint_converts_with_its_discriminator(tmp_path, authors_nets) -> None:
    gen, disc = authors_nets
    g_opt = torch.optim.Adam(gen.parameters())
    ckpt = {"generator_state_dict": gen.state_dict(), "discriminator_state_dict": disc.state_dict(),
            "optimizer_G_state_dict": g_opt.state_dict(), "epoch": 12}
    torch.save(ckpt, tmp_path / "ckpt_0012.pth")
    convert_authors_checkpoint(tmp_path / "ckpt_0012.pth", tmp_path / "prior.pt", "S")
    prior = load_prior(tmp_path / "prior.pt")
    assert (prior.latent_type, prior.latent_dim, prior.provenance["epoch"]) == ("S", 16, 12)
    z = prior.sample(5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(prior.decode_matrices(z).reshape(5, 21, 9), gen(z), rtol=0, atol=1e-6)
        payload = torch.load(tmp_path / "prior.pt", weights_only=True)
        ours = discriminator_from_state(disc.state_dict(), 21)
        ours.load_state_dict(payload["discriminator"]["state_dict"])
        x = axis_angle_to_matrix(torch.randn(4, 21, 3))
        out = disc(x.reshape(4, 21, 9))
        torch.testing.assert_close(ours(x), torch.cat([out["poseeach"], out["poseall"]], 1), rtol=0, atol=1e-5)


def test_bare_generator_state_dict_with_dataparallel_prefix(tmp_path, authors_nets) -> None:
    gen, _ = authors_nets
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "gan_s_pretrained_state_dict.pth")
    assert main([str(tmp_path / "gan_s_pretrained_state_dict.pth"), str(tmp_path / "p.pt"), "--latent", "U"]) == 0
    prior = load_prior(tmp_path / "p.pt")
    z = torch.rand(3, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(prior.decode_matrices(z).reshape(3, 21, 9), gen(z), rtol=0, atol=1e-6)
    assert "discriminator" not in torch.load(tmp_path / "p.pt", weights_only=True)


def test_wrong_latent_size_and_foreign_files_are_refused(tmp_path, authors_nets, capsys) -> None:
    gen, _ = authors_nets
    torch.save(gen.state_dict(), tmp_path / "g.pth")
    assert main([str(tmp_path / "g.pth"), str(tmp_path / "p.pt"), "--latent", "S", "--latent-dim", "32"]) == 2
    assert "16-d latents, not latent_dim=32" in capsys.readouterr().err
    torch.save({"something": torch.ones(2)}, tmp_path / "other.pth")
    assert main([str(tmp_path / "other.pth"), str(tmp_path / "p.pt"), "--latent", "S"]) == 2
    assert "no generator weights" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()
