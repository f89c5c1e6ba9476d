"""GAN-S/U/N prior training (paper Sec. 3.2) as a thin LightningModule over `pose_prior.priors.gan.training`.

Manual optimisation: each training batch holds the real poses of one iteration of the configured
procedure (`authors`: one batch of B; `fresh`: k sub-batches, k*B), and the procedure's step runs the
generator and discriminator updates. Lightning's `manual_backward` is passed in as the backward hook,
which prepares DDP's reducer before every backward pass.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.hyperparameters import split_settings
from lightning_modules.rng_states import restore_rng_states, save_rng_states, seed_step_stream
from pose_prior.priors.gan.losses import discriminator_loss, generator_loss
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator
from pose_prior.priors.gan.prior import GANPrior
from pose_prior.priors.gan.settings import GanOptimSettings, GanSettings
from pose_prior.priors.gan.training import PROCEDURES, make_optimizers
from pose_prior.priors.latent import make_latent
from pose_prior.rotations import body_pose_to_matrices


class AdversarialPriorModule(pl.LightningModule):
    """Trains a GAN prior; its hyperparameters are the fields of `GanSettings` and `GanOptimSettings`.

    They come as flat keyword arguments, the form Lightning records in checkpoints (`hparams`) and passes
    back on `load_from_checkpoint`; missing ones take the settings' defaults, unknown ones are an error.
    """

    def __init__(self, seed: int = 0, **hyperparameters: Any) -> None:
        super().__init__()
        self.settings, self.optim_settings = split_settings(
            "AdversarialPriorModule", hyperparameters, GanSettings, GanOptimSettings)
        self.save_hyperparameters({**asdict(self.settings), **asdict(self.optim_settings), "seed": int(seed)})
        self.automatic_optimization = False
        s = self.settings
        self.latent = make_latent(s.latent, s.latent_dim)
        self.generator = PoseGenerator(latent_dim=s.latent_dim, hidden=s.gen_hidden, dropout=s.gen_dropout,
                                       slope=s.leaky_slope)
        self.discriminator = PoseDiscriminator(joint_features=s.disc_joint_features, hidden=s.disc_hidden,
                                               slope=s.leaky_slope)

    @classmethod
    def from_settings(cls, settings: GanSettings, optim: GanOptimSettings, seed: int = 0) -> AdversarialPriorModule:
        return cls(seed=seed, **asdict(settings), **asdict(optim))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        seed_step_stream(self.hparams.seed, self.current_epoch, batch_idx, self.global_rank)  # own fakes per rank
        g_opt, d_opt = self.optimizers()
        s = self.settings
        logs = PROCEDURES[s.procedure](
            self.generator, self.discriminator, g_opt, d_opt, batch, self.latent,
            d_steps=s.d_steps, joint_weight=s.joint_loss_weight, pose_weight=s.pose_loss_weight,
            backward=self.manual_backward,
        )
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, on_step=True, on_epoch=True)
        # the two losses on the progress bar (their parts and the discriminator's means go to the loggers)
        self.log_dict({"g": logs["g_loss"], "d": logs["d_loss"]}, on_step=True, prog_bar=True, logger=False)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """Discriminator and generator losses on held-out real poses against fixed fakes."""
        s = self.settings
        real = body_pose_to_matrices(batch)  # (B, 21, 3, 3)
        g = torch.Generator().manual_seed(1000 + batch_idx)  # the same fakes at every validation
        fake = self.generator(self.latent.sample(real.shape[0], generator=g).to(self.device))
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        d_loss, _ = discriminator_loss(d_real, d_fake, s.joint_loss_weight, s.pose_loss_weight)
        g_loss, _ = generator_loss(d_fake, s.joint_loss_weight, s.pose_loss_weight)
        self.log_dict(
            {"val/d_loss": d_loss, "val/g_loss": g_loss, "val/d_real": d_real.mean(), "val/d_fake": d_fake.mean()},
            on_epoch=True, sync_dist=True,
        )
        scores = getattr(self, "validation_scores", None)  # set by DiscriminatorHistogramCallback
        if scores is not None:
            scores["real"].append(d_real[:, -1].detach())
            scores["generated"].append(d_fake[:, -1].detach())

    def frozen_prior(self) -> GANPrior:
        """A frozen copy of the generator and its latent space, for evaluation callbacks (training goes on)."""
        return GANPrior(copy.deepcopy(self.generator), self.latent).to(self.device)

    def configure_optimizers(self):
        o = self.optim_settings
        return list(make_optimizers(self.generator, self.discriminator, g_lr=o.lr, d_lr=o.d_lr or o.lr,
                                    betas=(o.beta1, o.beta2)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng_states(checkpoint)  # resume=true continues the same random stream

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng_states(checkpoint)
