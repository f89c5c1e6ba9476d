"""GAN-S/U/N prior training (paper Sec. 3.2) as a thin LightningModule over `pose_prior.adversarial`.

Manual optimisation: each training batch holds `d_steps` real sub-batches (k*B, 63), one per
discriminator update, so every discriminator step sees fresh real poses; `train_step` runs the k
discriminator updates and the generator update. Lightning's `manual_backward` is passed in as the
backward hook, which prepares DDP's reducer before every backward pass.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.rng_states import restore_rng_states, save_rng_states, seed_step_stream
from pose_prior.adversarial import make_optimizers, train_step
from pose_prior.latent import make_latent
from pose_prior.networks import PoseDiscriminator, PoseGenerator, discriminator_loss, generator_loss
from pose_prior.rotations import body_pose_to_matrices


class AdversarialPriorModule(pl.LightningModule):
    def __init__(
        self,
        latent: str = "S",
        latent_dim: int = 32,
        gen_hidden: int = 512,
        gen_dropout: float = 0.1,
        leaky_slope: float = 0.2,
        disc_joint_features: int = 32,
        disc_hidden: int = 64,
        d_steps: int = 10,
        joint_loss_weight: float = 21.0,
        pose_loss_weight: float = 1.0,
        lr: float = 2e-4,
        d_lr: float | None = None,
        beta1: float = 0.5,
        beta2: float = 0.999,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.latent = make_latent(latent, latent_dim)
        self.generator = PoseGenerator(latent_dim=latent_dim, hidden=gen_hidden, dropout=gen_dropout, slope=leaky_slope)
        self.discriminator = PoseDiscriminator(joint_features=disc_joint_features, hidden=disc_hidden, slope=leaky_slope)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        seed_step_stream(self.hparams.seed, self.current_epoch, batch_idx, self.global_rank)  # own fakes per rank
        g_opt, d_opt = self.optimizers()
        h = self.hparams
        logs = train_step(
            self.generator, self.discriminator, g_opt, d_opt, batch, self.latent,
            d_steps=h.d_steps, joint_weight=h.joint_loss_weight, pose_weight=h.pose_loss_weight,
            backward=self.manual_backward,
        )
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, on_step=True, on_epoch=True)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """Discriminator and generator losses on held-out real poses against fixed fakes."""
        h = self.hparams
        real = body_pose_to_matrices(batch)  # (B, 21, 3, 3)
        g = torch.Generator().manual_seed(1000 + batch_idx)  # the same fakes at every validation
        fake = self.generator(self.latent.sample(real.shape[0], generator=g).to(self.device))
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        d_loss, _ = discriminator_loss(d_real, d_fake, h.joint_loss_weight, h.pose_loss_weight)
        g_loss, _ = generator_loss(d_fake, h.joint_loss_weight, h.pose_loss_weight)
        self.log_dict(
            {"val/d_loss": d_loss, "val/g_loss": g_loss, "val/d_real": d_real.mean(), "val/d_fake": d_fake.mean()},
            on_epoch=True, sync_dist=True,
        )

    def configure_optimizers(self):
        h = self.hparams
        return list(make_optimizers(self.generator, self.discriminator, g_lr=h.lr, d_lr=h.d_lr or h.lr,
                                    betas=(h.beta1, h.beta2)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng_states(checkpoint)  # resume=true continues the same random stream

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng_states(checkpoint)
