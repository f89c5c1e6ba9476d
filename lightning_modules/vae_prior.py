"""VPoser v2 baseline training (docs/protocols.md#vposer-training) as a thin LightningModule over `pose_prior.priors.vposer.model`.

Training loss: 0.005 KL + 4 mesh L1, plus 2 geodesic rotation + 2 joint L1 while epoch < 15
(`vposer_batch_loss`). Validation metric `val/v2v`: the unweighted mean per-vertex Euclidean distance (m)
between the bodies of the input pose and of its reconstruction, z drawn from q(z | pose) as upstream's
validation does, but with noise fixed per validation batch so the metric does not jitter between epochs.
Adam (lr 1e-3, weight decay 1e-5) with ReduceLROnPlateau on `val/v2v`, stepped after each validation so the
epoch's checkpoint already holds the step (exact resume); early stopping is the runner's.

The body model is kept outside the module's registered children: it is not trainable, and its buffers
would otherwise be written into every checkpoint. It follows the module's device on first use.
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from lightning_modules.rng_states import restore_rng_states, save_rng_states, seed_step_stream
from pose_prior.evaluation.distance import mesh_distance
from pose_prior.priors.vposer.model import VPOSER_LOSS_WEIGHTS, VPoser, vposer_batch_loss
from pose_prior.priors.vposer.prior import VPoserPrior

VAL_METRIC = "val/v2v"  # metres; `val/v2v_mm` is the same in millimetres


def reconstruction_v2v(
    vposer: VPoser, pose_body: torch.Tensor, body_model: nn.Module, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, 63) -> (B,): per-body mean vertex distance (m) between input and reconstructed bodies.

    z = mu + sigma * eps (eps (B, latent_dim), e.g. fixed noise); eps None decodes the posterior mean.
    """
    q = vposer.encode(pose_body)
    z = q.loc if eps is None else q.loc + q.scale * eps.to(q.loc)
    mats = vposer.decode(z)["pose_body_matrot"].reshape(pose_body.shape[0], -1, 3, 3)  # (B, 21, 3, 3)
    rec = body_model(mats).vertices  # (B, V, 3)
    orig = body_model(pose_body).vertices  # (B, V, 3)
    return mesh_distance(rec, orig)


def validation_noise(batch_size: int, latent_dim: int, batch_idx: int) -> torch.Tensor:
    """(B, latent_dim) standard normal noise, the same for a given validation batch at every epoch."""
    g = torch.Generator().manual_seed(1000 + int(batch_idx))
    return torch.randn(batch_size, latent_dim, generator=g)


class VAEPriorModule(pl.LightningModule):
    """Trains VPoser v2 on (B, 63) axis-angle body poses with the losses of V02_05."""

    def __init__(
        self,
        body_model: nn.Module | None = None,
        body_model_path: str = "open",
        model_type: str = "smpl",
        gender: str = "neutral",
        num_neurons: int = 512,
        latent_dim: int = 32,
        kl_weight: float = VPOSER_LOSS_WEIGHTS["kl"],
        mesh_weight: float = VPOSER_LOSS_WEIGHTS["mesh"],
        matrot_weight: float = VPOSER_LOSS_WEIGHTS["matrot"],
        jtr_weight: float = VPOSER_LOSS_WEIGHTS["jtr"],
        keep_extra_until: int = 15,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        plateau_patience: int = 5,
        plateau_factor: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["body_model"])
        self.vposer = VPoser(num_neurons=num_neurons, latent_dim=latent_dim)
        if body_model is None:
            from pose_prior.body_model import load_body_model

            body_model = load_body_model(body_model_path, model_type=model_type, gender=gender)
        for p in body_model.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "_body_model", body_model)  # not a registered child (see module docstring)

    @property
    def body_model(self) -> nn.Module:
        """The body model, moved to this module's device if needed."""
        bm = self._body_model
        ref = next(bm.buffers(), None)
        if ref is not None and ref.device != self.device:
            bm.to(self.device)
        return bm

    @property
    def loss_weights(self) -> dict[str, float]:
        h = self.hparams
        return {"kl": h.kl_weight, "mesh": h.mesh_weight, "matrot": h.matrot_weight, "jtr": h.jtr_weight}

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        seed_step_stream(self.hparams.seed, self.current_epoch, batch_idx, self.global_rank)  # own noise per rank
        terms = vposer_batch_loss(
            self.vposer, batch, self.body_model, epoch=self.current_epoch,
            keep_extra_until=self.hparams.keep_extra_until, weights=self.loss_weights,
        )
        terms.pop("out")
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, on_step=True, on_epoch=True,
                      batch_size=batch.shape[0])
        return terms["loss_total"]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        eps = validation_noise(batch.shape[0], self.hparams.latent_dim, batch_idx)
        v2v = reconstruction_v2v(self.vposer, batch, self.body_model, eps).mean()
        self.log_dict({VAL_METRIC: v2v, f"{VAL_METRIC}_mm": 1000.0 * v2v}, on_epoch=True, sync_dist=True,
                      batch_size=batch.shape[0])

    def frozen_prior(self) -> VPoserPrior:
        """A frozen copy of the VAE as a prior, for evaluation callbacks (training goes on)."""
        return VPoserPrior(copy.deepcopy(self.vposer)).to(self.device)

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        opt = torch.optim.Adam(self.vposer.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=h.plateau_factor, patience=h.plateau_patience
        )
        # Stepped by `on_validation_end`, not by Lightning (see `lr_scheduler_step`); not strict, so a run
        # without validation simply keeps its learning rate.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": VAL_METRIC, "interval": "epoch",
                                                   "frequency": 1, "strict": False}}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """No-op: Lightning would step the plateau scheduler after the epoch's checkpoint is written, so a
        resumed run would miss that epoch's step; `on_validation_end` steps it before the checkpoint."""

    def on_validation_end(self) -> None:
        """One ReduceLROnPlateau step per validation during fit, on the epoch's (DDP-reduced) val v2v."""
        trainer = self.trainer
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(VAL_METRIC)
        if value is not None:
            self.lr_schedulers().step(float(value))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng_states(checkpoint)  # resume=true continues the same random stream

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng_states(checkpoint)
