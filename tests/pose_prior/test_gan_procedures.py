"""The authors' GAN iteration (the default procedure) against a plain loop written from its description."""

from __future__ import annotations

import copy

import torch

from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator
from pose_prior.priors.gan.training import PROCEDURES, make_optimizers, real_batches_per_iteration
from pose_prior.priors.latent import make_latent
from pose_prior.rotations import axis_angle_to_matrix

B, K, N = 16, 3, 4  # batch, discriminator steps, iterations


def _setup():
    torch.manual_seed(0)
    G = PoseGenerator(latent_dim=8, hidden=32, num_joints=21, dropout=0.0, slope=0.2)
    D = PoseDiscriminator(num_joints=21, joint_features=8, hidden=16, num_layers=2, slope=0.2)
    reals = [axis_angle_to_matrix(torch.randn(B, 21, 3, generator=torch.Generator().manual_seed(i)) * 0.4)
             for i in range(N)]
    return G, D, reals


def _plain_authors_loop(G, D, reals, latent):
    """One real batch per iteration; ONE generator step first (B fresh latents, fakes, LSGAN towards 1 through
    D, update); then K discriminator steps, each on the same real batch and the same fakes (detached, made
    before the generator's update). Loss: per column (d - label)^2 x weight / columns of its term (21/21,
    1/1), averaged over batch and 22 columns; discriminator: fake term + real term."""
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    w = torch.tensor([21.0 / 21] * 21 + [1.0 / 1])

    def lsgan(out: torch.Tensor, label: float) -> torch.Tensor:
        return ((out - label) ** 2 * w).mean()

    losses = []
    for it, real in enumerate(reals):
        torch.manual_seed(100 + it)
        fake = G(latent.sample(B))
        g_loss = lsgan(D(fake), 1.0)
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        fake = fake.detach()
        for _ in range(K):
            d_loss = lsgan(D(fake), 0.0) + lsgan(D(real), 1.0)
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
        losses.append((g_loss.item(), d_loss.item()))
    return losses


def _run(procedure: str, G, D, reals, latent):
    g_opt, d_opt = make_optimizers(G, D, g_lr=2e-4, d_lr=2e-4, betas=(0.5, 0.999))
    step = PROCEDURES[procedure]
    losses = []
    for it in range(N):
        torch.manual_seed(100 + it)
        real = torch.cat([reals[(it + j) % N] for j in range(real_batches_per_iteration(procedure, K))])
        logs = step(G, D, g_opt, d_opt, real, latent, d_steps=K, joint_weight=21.0, pose_weight=1.0)
        losses.append((logs["g_loss"].item(), logs["d_loss"].item()))
    return losses


def test_authors_procedure_equals_the_plain_loop() -> None:
    G, D, reals = _setup()
    latent = make_latent("S", 8)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    ours = _run("authors", G, D, reals, latent)
    plain = _plain_authors_loop(G2, D2, reals, latent)
    for (g1, d1), (g2, d2) in zip(ours, plain):
        assert abs(g1 - g2) <= 1e-5 * abs(g2) and abs(d1 - d2) <= 1e-5 * abs(d2), (ours, plain)
    for a, b in zip(list(G.parameters()) + list(D.parameters()), list(G2.parameters()) + list(D2.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fresh_variant_differs_and_reads_k_batches() -> None:
    assert (real_batches_per_iteration("authors", K), real_batches_per_iteration("fresh", K)) == (1, K)
    G, D, reals = _setup()
    latent = make_latent("S", 8)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    _run("fresh", G, D, reals, latent)
    _plain_authors_loop(G2, D2, reals, latent)
    assert not torch.allclose(next(G.parameters()), next(G2.parameters()), rtol=1e-4, atol=1e-6)
