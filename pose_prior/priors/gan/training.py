"""GAN training iterations (paper Sec. 3.2): the authors' procedure (the default) and the "fresh" variant.

`authors` (their `train_gan.py`): an iteration reads ONE real batch of B poses. First one generator step
(B fresh latents, fakes, LSGAN loss towards 1 through the discriminator, generator update); then k
discriminator steps, each on the SAME real batch and the SAME fakes (the generator's, made before its
update, detached). One generator pass and B real poses per iteration.

`fresh` (this framework's earlier default): k discriminator steps first, each on its own real sub-batch
and fresh fakes, then the generator step: k*B real poses and k*B + B fakes per iteration, so an epoch of
the same number of iterations reads k times the data and costs about twice the generator work.

Implementation choices (same mathematics, faster): each discriminator step scores real and fake in ONE
pass over the concatenated batch, prepared once (`PoseDiscriminator.prepare`) for the authors' k steps on
the same input, and takes its loss and gradients from `PoseDiscriminator.step_loss` (hand-written
backward, `fused.py`); during the generator step the discriminator's parameters do not require grad (the
step back-propagates through it to its input only); Adam runs torch's fused kernel; gradients are reset
with `set_to_none=True`; in `fresh`, the fakes of all discriminator steps come from one no-grad generator
pass. Discriminators without `prepare` (any nn.Module returning (N, J + 1) logits) take the plain path.
`backward` is a hook for frameworks (Lightning passes `self.manual_backward`, which DDP needs).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import nn

from pose_prior.priors.gan.fused import PreparedPoses
from pose_prior.priors.gan.losses import discriminator_loss, generator_loss
from pose_prior.priors.gan.settings import GanOptimSettings
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


# Per discriminator: its last prepared inputs by use ("g": generator step, "d": discriminator steps), whose
# buffers the next iteration's inputs take over (`PreparedPoses`): fresh buffers cost more in page faults
# than the steps' element-wise work. Weak keys: nothing outlives the discriminator, nothing is pickled.
_PREPARED: weakref.WeakKeyDictionary[nn.Module, dict[str, PreparedPoses]] = weakref.WeakKeyDictionary()


def _prepared(discriminator: nn.Module, use: str, rotmats: torch.Tensor) -> torch.Tensor | PreparedPoses:
    """`rotmats` prepared for `discriminator` with the buffers of its last input of the same use (the tensor
    itself for discriminators without `prepare`)."""
    prepare = getattr(discriminator, "prepare", None)
    if prepare is None:
        return rotmats
    cache = _PREPARED.setdefault(discriminator, {})
    cache[use] = prepare(rotmats, reuse=cache.get(use))
    return cache[use]


def _discriminator_step(discriminator, d_opt, both, num_real, joint_weight, pose_weight, backward):
    """One discriminator update on real + fake (the first num_real, then the fakes; `_prepared` or a tensor)
    in one pass -> logs."""
    if isinstance(both, PreparedPoses):  # the loss with hand-written gradients (same values)
        d_loss, d_out, d_parts = discriminator.step_loss(both, num_real, joint_weight, pose_weight)
        d_real, d_fake = d_out[:num_real], d_out[num_real:]
    else:
        d_out = discriminator(both)  # (B + B', J + 1)
        d_real, d_fake = d_out[:num_real], d_out[num_real:]
        d_loss, d_parts = discriminator_loss(d_real, d_fake, joint_weight, pose_weight)
    d_opt.zero_grad(set_to_none=True)
    backward(d_loss)
    d_opt.step()
    return {"d_loss": d_loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(),
            **{f"d_{k}": v.detach() for k, v in d_parts.items()}}


def _generator_step(generator, discriminator, g_opt, latent, batch, device, dtype, joint_weight, pose_weight,
                    backward):
    """One generator update through the frozen discriminator -> (fakes made before the update, logs)."""
    with frozen(discriminator):
        fake = generator(latent.sample(batch, device=device, dtype=dtype))  # (B, J, 3, 3)
        # prepared: the hand-written trunk, input gradient only
        g_loss, g_parts = generator_loss(discriminator(_prepared(discriminator, "g", fake)), joint_weight,
                                         pose_weight)
        g_opt.zero_grad(set_to_none=True)
        backward(g_loss)
        g_opt.step()
    return fake.detach(), {"g_loss": g_loss.detach(), **{f"g_{k}": v.detach() for k, v in g_parts.items()}}


def authors_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    real_batch: torch.Tensor,
    latent: LatentSpace,
    d_steps: int,
    joint_weight: float,
    pose_weight: float,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """The authors' iteration: one generator step, then `d_steps` discriminator steps on the same real batch
    (B, J, 3, 3) or (B, 3*J) and the generator step's fakes; returns detached scalars for logging."""
    backward = backward or (lambda loss: loss.backward())
    real = as_rotmats(real_batch, discriminator.num_joints)
    fake, logs = _generator_step(generator, discriminator, g_opt, latent, real.shape[0], real.device, real.dtype,
                                 joint_weight, pose_weight, backward)
    both = _prepared(discriminator, "d", torch.cat([real, fake], 0))  # the same input for all d_steps
    for _ in range(d_steps):
        d_logs = _discriminator_step(discriminator, d_opt, both, real.shape[0], joint_weight, pose_weight, backward)
    return {**logs, **d_logs}


def fresh_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_opt: torch.optim.Optimizer,
    d_opt: torch.optim.Optimizer,
    real_batch: torch.Tensor,
    latent: LatentSpace,
    d_steps: int,
    joint_weight: float,
    pose_weight: float,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """The "fresh" variant: `d_steps` discriminator updates, each on its own real sub-batch and fresh fakes,
    then one generator update. real_batch: (k*B, J, 3, 3) or (k*B, 3*J), split into k sub-batches of B
    (the last may be smaller); the generator step uses B fresh latents."""
    backward = backward or (lambda loss: loss.backward())
    real = as_rotmats(real_batch, discriminator.num_joints)
    if real.shape[0] < d_steps:
        raise ValueError(f"real batch has {real.shape[0]} poses, fewer than d_steps={d_steps}")
    chunks = real.chunk(d_steps)
    with torch.no_grad():  # the generator does not change during the discriminator steps: one pass
        fakes = generator(latent.sample(real.shape[0], device=real.device, dtype=real.dtype)).split(
            [c.shape[0] for c in chunks])
    for real_i, fake_i in zip(chunks, fakes):
        both = _prepared(discriminator, "d", torch.cat([real_i, fake_i], 0))
        d_logs = _discriminator_step(discriminator, d_opt, both, real_i.shape[0], joint_weight, pose_weight, backward)
    _, logs = _generator_step(generator, discriminator, g_opt, latent, chunks[0].shape[0], real.device, real.dtype,
                              joint_weight, pose_weight, backward)
    return {**logs, **d_logs}


IterationStep = Callable[..., dict[str, torch.Tensor]]
PROCEDURES: dict[str, IterationStep] = {"authors": authors_step, "fresh": fresh_step}


def real_batches_per_iteration(procedure: str, d_steps: int) -> int:
    """How many batches of B real poses one iteration of `procedure` reads (the datamodule serves that many)."""
    if procedure not in PROCEDURES:
        raise ValueError(f"unknown GAN training procedure {procedure!r}; expected one of {sorted(PROCEDURES)}")
    return 1 if procedure == "authors" else int(d_steps)


def make_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    g_lr: float = GanOptimSettings.lr,
    d_lr: float = GanOptimSettings.lr,
    betas: tuple[float, float] = (GanOptimSettings.beta1, GanOptimSettings.beta2),
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The authors' optimisers (`GanOptimSettings`): Adam for both networks, with torch's fused kernel (one
    pass over each parameter instead of foreach's ~10; a third of the time for the discriminator's ~50k)."""
    g_opt = torch.optim.Adam(generator.parameters(), lr=g_lr, betas=betas, fused=True)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=betas, fused=True)
    return g_opt, d_opt
