"""The GAN iterations: both networks update, frozen parameters are restored, the losses match a recomputation."""

from __future__ import annotations

import pytest
import torch

from pose_prior.priors.gan.losses import discriminator_loss, generator_loss
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator
from pose_prior.priors.gan.training import as_rotmats, authors_step, fresh_step, frozen, make_optimizers
from pose_prior.priors.latent import make_latent
from pose_prior.rotations import axis_angle_to_matrix


def _nets():
    torch.manual_seed(0)
    return PoseGenerator(hidden=32), PoseDiscriminator(hidden=16)


def test_authors_step_updates_both_networks_and_restores_grad_flags() -> None:
    G, D = _nets()
    g_opt, d_opt = make_optimizers(G, D)
    g0 = [p.detach().clone() for p in G.parameters()]
    d0 = [p.detach().clone() for p in D.parameters()]
    logs = authors_step(G, D, g_opt, d_opt, torch.randn(8, 63) * 0.3, make_latent("S", 32), d_steps=3,
                        joint_weight=21.0, pose_weight=1.0)
    assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert all(p.requires_grad for p in list(G.parameters()) + list(D.parameters()))
    assert all(torch.isfinite(v) for v in logs.values())


def test_fresh_step_updates_both_networks_and_restores_grad_flags() -> None:
    G, D = _nets()
    g_opt, d_opt = make_optimizers(G, D)
    g0 = [p.detach().clone() for p in G.parameters()]
    d0 = [p.detach().clone() for p in D.parameters()]
    real = torch.randn(3 * 8, 63) * 0.3  # axis-angle input is accepted
    logs = fresh_step(G, D, g_opt, d_opt, real, make_latent("S", 32), d_steps=3, joint_weight=21.0, pose_weight=1.0)
    assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert all(p.requires_grad for p in list(G.parameters()) + list(D.parameters()))
    for key in ("d_loss", "g_loss", "d_joint_real", "g_pose", "d_real", "d_fake"):
        assert torch.isfinite(logs[key]) and logs[key].dim() == 0


def test_discriminator_step_loss_matches_recomputation() -> None:
    """With d_steps=1 and the optimisers' lr 0, the logged losses equal losses recomputed by hand."""
    G, D = _nets()
    g_opt, d_opt = make_optimizers(G, D, g_lr=0.0, d_lr=0.0)
    real = axis_angle_to_matrix(torch.randn(16, 21, 3) * 0.3)
    latent = make_latent("N", 32)
    torch.manual_seed(5)
    logs = fresh_step(G, D, g_opt, d_opt, real, latent, d_steps=1, joint_weight=21.0, pose_weight=1.0)
    torch.manual_seed(5)  # same latents and dropout masks as inside fresh_step (lr 0: nothing moved)
    with torch.no_grad():
        fake = G(latent.sample(16))
        d_loss, _ = discriminator_loss(D(real), D(fake), 21.0, 1.0)
        g_fake = G(latent.sample(16))
        g_loss, _ = generator_loss(D(g_fake), 21.0, 1.0)
    torch.testing.assert_close(logs["d_loss"], d_loss)
    torch.testing.assert_close(logs["g_loss"], g_loss)


def test_frozen_and_input_checks() -> None:
    lin = torch.nn.Linear(2, 2)
    lin.bias.requires_grad_(False)
    with frozen(lin):
        assert not lin.weight.requires_grad
        x = torch.ones(1, 2, requires_grad=True)
        lin(x).sum().backward()  # back-propagates to the input only
    assert lin.weight.grad is None and x.grad is not None
    assert lin.weight.requires_grad and not lin.bias.requires_grad  # only what it froze is restored
    with pytest.raises(ValueError, match="rotation matrices"):
        as_rotmats(torch.zeros(4, 60), 21)
