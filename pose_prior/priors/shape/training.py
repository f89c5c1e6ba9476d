"""The authors' GAN iteration over flat samples, for the shape priors (supplement D).

The same iteration as `pose_prior.priors.gan.training.authors_step` (their `train_gan.py`): ONE real
batch; one generator step first (B fresh latents, fakes, LSGAN loss towards 1 through the frozen
discriminator, update); then `d_steps` discriminator steps, each on that same real batch and the same
detached fakes, real and fake scored in one pass. It differs only in what a sample is: a flat tensor
made by the generator's `sample_vector(z)` (betas, or packed rotation matrices + betas) and losses over
named column groups (`pose_prior.priors.shape.losses`). The pose-only step is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pose_prior.priors.gan.training import frozen
from pose_prior.priors.latent import LatentSpace
from pose_prior.priors.shape.losses import Groups, discriminator_loss, generator_loss


def discriminator_step(discriminator: nn.Module, d_opt: torch.optim.Optimizer, real: torch.Tensor,
                       fake: torch.Tensor, groups: Groups, backward: Callable[[torch.Tensor], None]
                       ) -> dict[str, torch.Tensor]:
    """One discriminator update on real (B, D) and fake (B', D) in one pass -> detached logs."""
    d_out = discriminator(torch.cat([real, fake], 0))  # (B + B', C)
    d_real, d_fake = d_out[: real.shape[0]], d_out[real.shape[0]:]
    d_loss, parts = discriminator_loss(d_real, d_fake, groups)
    d_opt.zero_grad(set_to_none=True)
    backward(d_loss)
    d_opt.step()
    return {"d_loss": d_loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(),
            **{f"d_{k}": v for k, v in parts.items()}}


def flat_authors_step(generator: nn.Module, discriminator: nn.Module, g_opt: torch.optim.Optimizer,
                      d_opt: torch.optim.Optimizer, real: torch.Tensor, latent: LatentSpace, d_steps: int,
                      groups: Groups, backward: Callable[[torch.Tensor], None] | None = None
                      ) -> dict[str, torch.Tensor]:
    """The authors' iteration on a real batch of flat samples (B, D); returns detached scalars for logging."""
    backward = backward or (lambda loss: loss.backward())
    with frozen(discriminator):
        fake = generator.sample_vector(latent.sample(real.shape[0], device=real.device, dtype=real.dtype))
        g_loss, g_parts = generator_loss(discriminator(fake), groups)
        g_opt.zero_grad(set_to_none=True)
        backward(g_loss)
        g_opt.step()
    logs = {"g_loss": g_loss.detach(), **{f"g_{k}": v for k, v in g_parts.items()}}
    fake = fake.detach()
    for _ in range(d_steps):
        d_logs = discriminator_step(discriminator, d_opt, real, fake, groups, backward)
    return {**logs, **d_logs}
