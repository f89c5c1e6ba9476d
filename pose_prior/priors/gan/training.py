"""One GAN training iteration (paper Sec. 3.2): `d_steps` discriminator updates, then one generator update.

This is the loop the Lightning module runs and `bench/train_throughput.py` times. Same mathematics as
the authors' loop (LSGAN losses, a fresh real and fake sub-batch per discriminator step, Adam), with
these implementation choices:
- the fakes of all discriminator steps come from ONE no-grad generator pass over k*B latents (the
  generator does not change during the discriminator steps, so each step still sees fresh fakes);
- each discriminator step scores real and fake in ONE pass over the concatenated batch;
- during the generator step the discriminator's parameters do not require grad (no unused weight
  gradients: the step back-propagates through the discriminator to its input only), restored after;
- gradients are reset with `set_to_none=True`.
`backward` is a hook for frameworks (Lightning passes `self.manual_backward`, which DDP needs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from pose_prior.priors.gan.losses import discriminator_loss, generator_loss
from pose_prior.priors.gan.settings import GanOptimSettings, GanSettings
from pose_prior.priors.latent import LatentSpace
from pose_prior.rotations import body_pose_to_matrices


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily set requires_grad=False on a module's parameters that require grad."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def as_rotmats(real: torch.Tensor, num_joints: int) -> torch.Tensor:
    """Real batch as rotation matrices: (N, J, 3, 3) passes through, (N, 3*J) axis-angle is converted."""
    if real.dim() == 4 and real.shape[1:] == (num_joints, 3, 3):
        return real
    if real.dim() == 2 and real.shape[1] == 3 * num_joints:
        return body_pose_to_matrices(real)
    raise ValueError(
        f"real batch must be (N, {num_joints}, 3, 3) rotation matrices or (N, {3 * num_joints}) axis-angle, "
        f"got {tuple(real.shape)}"
    )


def train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    real_batch: torch.Tensor,
    latent: LatentSpace,
    d_steps: int = GanSettings.d_steps,
    joint_weight: float = GanSettings.joint_loss_weight,
    pose_weight: float = GanSettings.pose_loss_weight,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Run d_steps discriminator updates then one generator update; return detached scalars for logging.

    real_batch: (k*B, J, 3, 3) or (k*B, 3*J) real poses, split into d_steps sub-batches of B (the last
    may be smaller when k*B is not divisible); the generator step uses a batch of B fresh latents.
    """
    backward = backward or (lambda loss: loss.backward())
    J = discriminator.num_joints
    real = as_rotmats(real_batch, J)
    if real.shape[0] < d_steps:
        raise ValueError(f"real batch has {real.shape[0]} poses, fewer than d_steps={d_steps}")
    chunks = real.chunk(d_steps)
    batch = chunks[0].shape[0]
    device, dtype = real.device, real.dtype

    # --- discriminator steps: fakes for all steps in one pass -----------------------------------
    with torch.no_grad():
        fakes = generator(latent.sample(real.shape[0], device=device, dtype=dtype)).split(
            [c.shape[0] for c in chunks]
        )
    for real_i, fake_i in zip(chunks, fakes):
        d_out = discriminator(torch.cat([real_i, fake_i], 0))  # (2B, J + 1)
        d_real, d_fake = d_out[: real_i.shape[0]], d_out[real_i.shape[0] :]
        d_loss, d_parts = discriminator_loss(d_real, d_fake, joint_weight, pose_weight)
        d_opt.zero_grad(set_to_none=True)
        backward(d_loss)
        d_opt.step()
    d_logs = {
        "d_loss": d_loss.detach(),
        "d_real": d_real.detach().mean(),
        "d_fake": d_fake.detach().mean(),
        **{f"d_{k}": v.detach() for k, v in d_parts.items()},
    }

    # --- generator step: gradients flow through the frozen discriminator to the fakes -------------
    with frozen(discriminator):
        fake = generator(latent.sample(batch, device=device, dtype=dtype))  # (B, J, 3, 3)
        g_loss, g_parts = generator_loss(discriminator(fake), joint_weight, pose_weight)
        g_opt.zero_grad(set_to_none=True)
        backward(g_loss)
        g_opt.step()
    return {"g_loss": g_loss.detach(), **{f"g_{k}": v.detach() for k, v in g_parts.items()}, **d_logs}


def make_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    g_lr: float = GanOptimSettings.lr,
    d_lr: float = GanOptimSettings.lr,
    betas: tuple[float, float] = (GanOptimSettings.beta1, GanOptimSettings.beta2),
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The authors' optimisers (`GanOptimSettings`): Adam for both networks (foreach kernels)."""
    g_opt = torch.optim.Adam(generator.parameters(), lr=g_lr, betas=betas, foreach=True)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=betas, foreach=True)
    return g_opt, d_opt
