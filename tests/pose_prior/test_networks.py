"""Generator/discriminator: valid rotations, parameter arithmetic, fused heads vs a loop, LSGAN losses."""

from __future__ import annotations

import torch
from torch import nn

from pose_prior.priors.gan.losses import discriminator_loss, generator_loss
from pose_prior.priors.gan.networks import (
    PoseDiscriminator,
    PoseGenerator,
    discriminator_param_count,
    discriminator_state_from_authors,
)
from pose_prior.rotations import axis_angle_to_matrix


def test_generator_outputs_rotations() -> None:
    g = PoseGenerator().eval()
    z = torch.randn(64, 32) * 3.0
    R = g(z).double()  # (64, 21, 3, 3)
    assert R.shape == (64, 21, 3, 3)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64, 21, dtype=torch.float64), atol=1e-5, rtol=0)
    aa = g.body_pose(z)
    assert aa.shape == (64, 63)
    torch.testing.assert_close(axis_angle_to_matrix(aa.reshape(64, 21, 3)), g(z), atol=1e-5, rtol=0)


def test_generator_parameter_count_and_dropout_in_train_mode() -> None:
    g = PoseGenerator()
    expected = (32 * 512 + 512) + (512 * 512 + 512) + (512 * 126 + 126)
    assert sum(p.numel() for p in g.parameters()) == expected
    z = torch.randn(8, 32)
    g.train()
    assert not torch.equal(g(z), g(z))  # dropout active
    g.eval()
    assert torch.equal(g(z), g(z))


def test_discriminator_parameter_count_matches_arithmetic() -> None:
    d = PoseDiscriminator()
    n = sum(p.numel() for p in d.parameters())
    # 9->32, 32->32 shared; 21 heads of 32+1; 672->64->64->1 (authors' public ganS config)
    by_hand = (9 * 32 + 32) + (32 * 32 + 32) + 21 * 33 + (672 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert n == by_hand == discriminator_param_count() == 49_366
    # their code's default (and HMR's) width 1024
    wide = PoseDiscriminator(hidden=1024)
    by_hand = (9 * 32 + 32) + (32 * 32 + 32) + 21 * 33 + (672 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 + 1)
    assert sum(p.numel() for p in wide.parameters()) == by_hand == discriminator_param_count(hidden=1024) == 1_741_846
    small = PoseDiscriminator(num_joints=5, joint_features=4, hidden=7, num_layers=3)
    assert sum(p.numel() for p in small.parameters()) == discriminator_param_count(5, 4, 7, 3)


def test_fused_heads_equal_a_loop_of_linear_layers() -> None:
    d = PoseDiscriminator().double()
    heads = [nn.Linear(32, 1).double() for _ in range(21)]
    with torch.no_grad():
        for j, h in enumerate(heads):
            h.weight.copy_(d.head_weight[j : j + 1])
            h.bias.copy_(d.head_bias[j : j + 1])
    x = axis_angle_to_matrix(torch.randn(16, 21, 3, dtype=torch.float64))
    feat = d.joint_features_of(x)  # (16, 21, 32)
    loop = torch.cat([heads[j](feat[:, j]) for j in range(21)], dim=1)
    torch.testing.assert_close(d(x)[:, :21], loop, atol=1e-6, rtol=0)
    # float32 too
    d32 = d.float()
    torch.testing.assert_close(d32(x.float())[:, :21], loop.float(), atol=1e-5, rtol=0)


def test_discriminator_matches_authors_layout_after_conversion() -> None:
    """Authors' Conv2d + per-joint ModuleList + feature-major flatten give the same logits."""
    from bench.authors_reference import AuthorsDiscriminator

    torch.manual_seed(0)
    x = axis_angle_to_matrix(torch.randn(8, 21, 3, dtype=torch.float64))
    for width in (64, 1024):  # their public ganS config, their code's default
        theirs = AuthorsDiscriminator(hidden_poseall=width).double()
        ours = PoseDiscriminator(hidden=width).double()
        ours.load_state_dict(discriminator_state_from_authors(theirs.state_dict()))
        out = theirs(x.reshape(8, 21, 9))
        torch.testing.assert_close(ours(x), torch.cat([out["poseeach"], out["poseall"]], 1), atol=1e-10, rtol=0)


def test_least_squares_losses_by_hand() -> None:
    # 2 samples, 2 joints + whole pose
    d_real = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 1.0]])
    d_fake = torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.0, 0.0]])
    total, parts = discriminator_loss(d_real, d_fake, joint_weight=21.0, pose_weight=1.0)
    # joint_real: ((0)^2 + (-1)^2 + (-0.5)^2 + 0^2) / 4 = 0.3125 ; pose_real: (1 + 0) / 2 = 0.5
    # joint_fake: (0 + 1 + 0.25 + 0) / 4 = 0.3125 ; pose_fake: (1 + 0) / 2 = 0.5
    assert parts["joint_real"].item() == 0.3125 and parts["pose_real"].item() == 0.5
    assert parts["joint_fake"].item() == 0.3125 and parts["pose_fake"].item() == 0.5
    # the authors' scale: column weights 21/2 (two joint columns) and 1/1, averaged over batch and 3 columns
    assert abs(total.item() - (21 * 0.625 + 1.0) / 3) < 1e-6
    g_total, g_parts = generator_loss(d_fake, joint_weight=21.0, pose_weight=1.0)
    # joint: (1 + 0 + 0.25 + 1) / 4 = 0.5625 ; pose: (4 + 1) / 2 = 2.5
    assert g_parts["joint"].item() == 0.5625 and g_parts["pose"].item() == 2.5
    assert abs(g_total.item() - (21 * 0.5625 + 2.5) / 3) < 1e-6


def test_losses_equal_the_authors_column_loop() -> None:
    """Their vanilla_gan loss, written from its description: per column (d - label)^2 * weight / columns of
    its term, averaged over batch and all J + 1 columns; discriminator: fake term + real term."""
    g = torch.Generator().manual_seed(0)
    d_real, d_fake = torch.randn(7, 22, generator=g, dtype=torch.float64), torch.randn(7, 22, generator=g, dtype=torch.float64)

    def term(d: torch.Tensor, label: float) -> float:
        total = 0.0
        for b in range(d.shape[0]):
            for c in range(22):
                weight = 21.0 / 21 if c < 21 else 1.0 / 1
                total += weight * (float(d[b, c]) - label) ** 2
        return total / (d.shape[0] * 22)

    d_loss, _ = discriminator_loss(d_real, d_fake, 21.0, 1.0)
    g_loss, _ = generator_loss(d_fake, 21.0, 1.0)
    assert abs(d_loss.item() - (term(d_fake, 0.0) + term(d_real, 1.0))) < 1e-12
    assert abs(g_loss.item() - term(d_fake, 1.0)) < 1e-12
