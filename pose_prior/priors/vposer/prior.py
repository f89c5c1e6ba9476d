"""VPoser behind the frozen-prior interface: latent N(0, I) of dim 32, decoder as generator, encoder-initialised
inversion. File kind "vposer" (read by `pose_prior.frozen_prior.load_prior`)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from pose_prior.frozen_prior import FrozenPrior, cpu_state_dict, register_prior_loader, write_prior_file
from pose_prior.latent import NormalLatent
from pose_prior.vposer import VPoser, load_vposer_checkpoint

KIND = "vposer"


class VPoserDecoderGenerator(nn.Module):
    """Adapter: a VPoser seen as a generator z (n, latent_dim) -> rotation matrices (n, 21, 3, 3).

    Holds the whole VPoser (the encoder initialises inversion); only the decoder runs in forward.
    """

    def __init__(self, vposer: VPoser) -> None:
        super().__init__()
        self.vposer = vposer
        self.latent_dim = vposer.latent_dim
        self.num_joints = vposer.num_joints

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vposer.decoder_net(z).reshape(z.shape[0], self.num_joints, 3, 3)


class VPoserPrior(FrozenPrior):
    """Frozen VPoser: sample z ~ N(0, I), decode with the decoder, invert from the encoder mean."""

    def __init__(self, vposer: VPoser, provenance: dict | None = None) -> None:
        super().__init__(VPoserDecoderGenerator(vposer), NormalLatent(vposer.latent_dim), provenance)

    @property
    def vposer(self) -> VPoser:
        return self.generator.vposer

    @classmethod
    def from_checkpoint(cls, source: str | os.PathLike | dict, provenance: dict | None = None) -> VPoserPrior:
        """From a V02_05 Lightning checkpoint (published weights), its state dict, or a VPoser state dict."""
        prov = dict(provenance or {})
        if isinstance(source, (str, os.PathLike)):
            prov.setdefault("source_checkpoint", os.fspath(source))
        return cls(load_vposer_checkpoint(source), prov)

    def encode_mean(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, 63) -> (B, latent_dim): mean of q(z | pose) (eval-mode batch norm)."""
        p = self._param()
        with torch.no_grad():
            return self.vposer.encode(body_pose.to(device=p.device, dtype=p.dtype)).mean

    def prior_penalty(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B,): ||z||^2, the pose prior term smplify-x uses with VPoser."""
        return z.square().sum(-1)

    def invert(
        self,
        body_pose: torch.Tensor,
        body_model: nn.Module,
        init: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encoder mean as a start (unless `init` is given), then FrozenPrior.invert's latent optimisation."""
        if init is None:
            init = self.encode_mean(body_pose)
        return super().invert(body_pose, body_model, init=init, **kwargs)


def save_vposer_prior(path: str | os.PathLike, prior: VPoserPrior | VPoser, provenance: dict | None = None) -> None:
    """Write a "vposer" prior file atomically (tensors and plain values; torch.load(weights_only=True))."""
    vposer = prior.vposer if isinstance(prior, VPoserPrior) else prior
    base = prior.provenance if isinstance(prior, VPoserPrior) else {}
    kwargs = {"num_neurons": vposer.num_neurons, "latent_dim": vposer.latent_dim, "num_joints": vposer.num_joints}
    write_prior_file(path, KIND, "N", vposer.latent_dim,
                     {"vposer": {"kwargs": kwargs, "state_dict": cpu_state_dict(vposer)}},
                     base, provenance)


def load_vposer_payload(payload: dict, path: str, device: torch.device | str | None) -> VPoserPrior:
    """PRIOR_LOADERS entry for kind "vposer"."""
    try:
        entry = payload["vposer"]
        vposer = VPoser(**entry["kwargs"])
        vposer.load_state_dict(entry["state_dict"], strict=True)
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: malformed VPoser prior file ({type(err).__name__}: {err})") from err
    prior = VPoserPrior(vposer.eval(), provenance=payload.get("provenance"))
    return prior.to(device) if device is not None else prior


register_prior_loader(KIND, load_vposer_payload)
