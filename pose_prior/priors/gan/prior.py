"""The GAN prior (GAN-S, GAN-U, GAN-N): a trained generator behind the prior interface; file kind "gan".

The file's kind-specific entry is `"generator": {"class": "PoseGenerator", "kwargs": {...}, "state_dict":
{name: tensor}}`; the envelope is `pose_prior.priors.file_format`'s.
"""

from __future__ import annotations

import copy
import os

import torch

from pose_prior.priors.base import GeneratorPrior
from pose_prior.priors.file_format import malformed
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import LatentSpace, make_latent

KIND = "gan"


class GANPrior(GeneratorPrior):
    """A generator with frozen weights (always in eval mode: no dropout) and its latent space."""

    kind = KIND

    @property
    def num_joints(self) -> int:
        return self.generator.num_joints

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, J, 3, 3) rotation matrices; differentiable in z."""
        return self.generator(z)


def save_prior(path: str | os.PathLike, generator: PoseGenerator, latent: LatentSpace,
               provenance: dict | None = None) -> None:
    """Write a GAN prior file atomically (tensors and plain values only); fills `date`, `git_commit`."""
    GANPrior(copy.deepcopy(generator), latent).save(path, provenance)


def load_gan_payload(payload: dict, path: str) -> GANPrior:
    """The "gan" kind's loader (`pose_prior.priors.file_format`)."""
    try:
        latent = make_latent(payload["latent"]["name"], int(payload["latent"]["dim"]))
        entry = payload["generator"]
        generator = PoseGenerator(**entry["kwargs"])
        generator.load_state_dict(entry["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise malformed(path, "GAN", err) from err
    return GANPrior(generator, latent, provenance=payload.get("provenance"))
