"""VPoser behind the prior interface: latent N(0, I), the decoder as generator, inversion started from the
encoder mean. File kind "vposer": `"vposer": {"kwargs": {...}, "state_dict": {...}}` in the envelope."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from pose_prior.priors.base import LatentPrior
from pose_prior.priors.file_format import cpu_state_dict, malformed
from pose_prior.priors.latent import NormalLatent
from pose_prior.priors.vposer.model import VPoser, load_vposer_checkpoint

KIND = "vposer"


class VPoserPrior(LatentPrior):
    """Frozen VPoser: sample z ~ N(0, I), decode with the decoder, invert from the encoder mean."""

    kind = KIND

    def __init__(self, vposer: VPoser, provenance: dict | None = None) -> None:
        super().__init__(NormalLatent(vposer.latent_dim), provenance)
        self.vposer = vposer  # the whole VAE: the encoder starts the inversion
        self.freeze().train(False)

    @property
    def num_joints(self) -> int:
        return self.vposer.num_joints

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike | dict, provenance: dict | None = None) -> VPoserPrior:
        """From a V02_05 Lightning checkpoint (published weights), its state dict, or a VPoser state dict."""
        prov = dict(provenance or {})
        if isinstance(source, (str, os.PathLike)):
            prov.setdefault("source_checkpoint", os.fspath(source))
        return cls(load_vposer_checkpoint(source), prov)

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 21, 3, 3) with VPoser's decoder."""
        return self.vposer.decoder_net(z).reshape(z.shape[0], self.num_joints, 3, 3)

    def encode_mean(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B, latent_dim): mean of q(z | pose) (eval-mode batch norm)."""
        with torch.no_grad():
            return self.vposer.encode(body_pose.to(device=self.device, dtype=self.dtype)).mean

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module, return_distance: bool = False,
               init: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The encoder mean as a start (unless `init` is given), then the shared latent optimisation."""
        if init is None:
            init = self.encode_mean(body_pose)
        return super().invert(body_pose, body_model, return_distance=return_distance, init=init, **kwargs)

    def file_entries(self) -> dict:
        v = self.vposer
        kwargs = {"num_neurons": v.num_neurons, "latent_dim": v.latent_dim, "num_joints": v.num_joints}
        return {"vposer": {"kwargs": kwargs, "state_dict": cpu_state_dict(v)}}


def load_vposer_payload(payload: dict, path: str) -> VPoserPrior:
    """The "vposer" kind's loader (`pose_prior.priors.file_format`)."""
    try:
        entry = payload["vposer"]
        vposer = VPoser(**entry["kwargs"])
        vposer.load_state_dict(entry["state_dict"], strict=True)
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise malformed(path, "VPoser", err) from err
    return VPoserPrior(vposer.eval(), provenance=payload.get("provenance"))
