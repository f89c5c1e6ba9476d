"""GAN-beta / GAN-theta-beta training (paper supplement D) as a thin LightningModule over
`pose_prior.priors.shape.training.flat_authors_step` (the authors' iteration, as GAN-S's default).

Batches: GAN-beta reads (B, K) betas; GAN-theta-beta reads {"body_pose": (B, 63), "betas": (B, K)},
packed into flat samples (rotation matrices + betas). Manual optimisation with Lightning's
`manual_backward` as the backward hook (DDP); fakes are reseeded per (seed, epoch, batch, rank) as GAN-S's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.hyperparameters import split_settings
from lightning_modules.rng_states import restore_rng_states, save_rng_states, seed_step_stream
from pose_prior.priors.gan.settings import GanOptimSettings
from pose_prior.priors.gan.training import make_optimizers
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape.losses import discriminator_loss, generator_loss
from pose_prior.priors.shape.networks import (
    PoseShapeDiscriminator,
    PoseShapeGenerator,
    ShapeDiscriminator,
    ShapeGenerator,
    pack_pose_shape,
)
from pose_prior.priors.shape.prior import GanBetaPrior, GanThetaBetaPrior
from pose_prior.priors.shape.settings import ShapeGanSettings, loss_groups
from pose_prior.priors.shape.training import flat_authors_step
from pose_prior.rotations import body_pose_to_matrices


def split_shape_hyperparameters(values: dict[str, Any]) -> tuple[ShapeGanSettings, GanOptimSettings]:
    """Flat hyperparameters -> (ShapeGanSettings, GanOptimSettings); unknown names raise."""
    values = dict(values)
    if "shape_disc_hidden" in values:  # omegaconf hands a ListConfig
        values["shape_disc_hidden"] = [int(h) for h in values["shape_disc_hidden"]]
    return split_settings("ShapePriorModule", values, ShapeGanSettings, GanOptimSettings)


class ShapePriorModule(pl.LightningModule):
    """Trains GAN-beta (`model="beta"`) or GAN-theta-beta (`model="theta_beta"`)."""

    def __init__(self, seed: int = 0, **hyperparameters: Any) -> None:
        super().__init__()
        self.settings, self.optim_settings = split_shape_hyperparameters(hyperparameters)
        self.save_hyperparameters({**asdict(self.settings), **asdict(self.optim_settings), "seed": int(seed)})
        self.automatic_optimization = False
        s = self.settings
        self.latent = make_latent(s.latent, s.latent_dim)
        self.groups = loss_groups(s)
        gen = dict(latent_dim=s.latent_dim, hidden=s.gen_hidden, dropout=s.gen_dropout, slope=s.leaky_slope,
                   num_betas=s.num_betas)
        if s.model == "beta":
            self.generator = ShapeGenerator(**gen)
            self.discriminator = ShapeDiscriminator(num_betas=s.num_betas, hidden=tuple(s.shape_disc_hidden),
                                                    slope=s.leaky_slope)
        else:
            self.generator = PoseShapeGenerator(**gen)
            self.discriminator = PoseShapeDiscriminator(
                num_betas=s.num_betas, joint_features=s.disc_joint_features, hidden=s.disc_hidden,
                shape_hidden=tuple(s.shape_disc_hidden), slope=s.leaky_slope)

    @classmethod
    def from_settings(cls, settings: ShapeGanSettings, optim: GanOptimSettings, seed: int = 0) -> ShapePriorModule:
        return cls(seed=seed, **asdict(settings), **asdict(optim))

    def real_samples(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """A batch -> flat real samples (B, D) (the generator's `sample_vector` layout)."""
        if self.settings.model == "beta":
            return batch if isinstance(batch, torch.Tensor) else batch["betas"]
        return pack_pose_shape(body_pose_to_matrices(batch["body_pose"]), batch["betas"])

    def training_step(self, batch: Any, batch_idx: int) -> None:
        seed_step_stream(self.hparams.seed, self.current_epoch, batch_idx, self.global_rank)
        g_opt, d_opt = self.optimizers()
        logs = flat_authors_step(self.generator, self.discriminator, g_opt, d_opt, self.real_samples(batch),
                                 self.latent, self.settings.d_steps, self.groups, backward=self.manual_backward)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, on_step=True, on_epoch=True)
        # the two losses on the progress bar (their parts and the discriminator's means go to the loggers)
        self.log_dict({"g": logs["g_loss"], "d": logs["d_loss"]}, on_step=True, prog_bar=True, logger=False)

    def held_out_losses(self, real: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """Discriminator / generator losses on held-out real samples (B, D) against fakes of a fixed seed."""
        g = torch.Generator().manual_seed(seed)
        fake = self.generator.sample_vector(self.latent.sample(real.shape[0], generator=g).to(real))
        d_real, d_fake = self.discriminator(real), self.discriminator(fake)
        d_loss, _ = discriminator_loss(d_real, d_fake, self.groups)
        g_loss, _ = generator_loss(d_fake, self.groups)
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real.mean(), "d_fake": d_fake.mean()}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        losses = self.held_out_losses(self.real_samples(batch), 1000 + batch_idx)  # same fakes every time
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, on_epoch=True, sync_dist=True)

    def frozen_prior(self) -> GanBetaPrior | GanThetaBetaPrior:
        """A frozen copy of the generator and its latent space (training goes on)."""
        cls = GanBetaPrior if self.settings.model == "beta" else GanThetaBetaPrior
        return cls(copy.deepcopy(self.generator), self.latent).to(self.device)

    def configure_optimizers(self):
        o = self.optim_settings
        return list(make_optimizers(self.generator, self.discriminator, g_lr=o.lr, d_lr=o.d_lr or o.lr,
                                    betas=(o.beta1, o.beta2)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng_states(checkpoint)
