"""The paper's authors' checkpoints in, our prior files out (`pose-prior-convert-authors`).

Users of the authors' code (cvlab-epfl/adv_param_pose_prior) have two kinds of file:
- a training checkpoint (`ckpt.pth`, `ckpt_NNNN.pth`, `best.pth`): a dict with `generator_state_dict`,
  `discriminator_state_dict`, the optimisers' states and `epoch`;
- a bare generator state dict (their demos load `gan_s_pretrained_state_dict.pth`).
Their generator's layer names are ours (`bodyprior_dec_fc1/fc2/out`), so its weights load unchanged; their
discriminator (1x1 convolutions and 21 separate heads) maps onto `PoseDiscriminator` through
`discriminator_state_from_authors` and is kept in the prior file when present. The latent type is not in
their files: the user names it, and its size is checked against the weights.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any

import torch

from pose_prior.io import load_tensors_file
from pose_prior.priors.file_format import cpu_state_dict
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator, discriminator_state_from_authors
from pose_prior.priors.gan.prior import GANPrior
from pose_prior.priors.latent import LATENT_SPACES, make_latent

GENERATOR_KEYS = ("bodyprior_dec_fc1.weight", "bodyprior_dec_fc2.weight", "bodyprior_dec_out.weight")


def _strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys saved from an `nn.DataParallel` / DDP wrapper start with "module."."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_authors_checkpoint(path: str | os.PathLike) -> tuple[dict, dict | None, dict[str, Any]]:
    """(generator state, discriminator state or None, {"epoch": ...}) from either of the authors' formats."""
    path = os.fspath(path)
    data = load_tensors_file(path, "a checkpoint of the authors' GAN code")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a dict (a training checkpoint or a generator state dict), "
                         f"got {type(data).__name__}")
    if "generator_state_dict" in data:
        gen, disc = data["generator_state_dict"], data.get("discriminator_state_dict")
        info = {"epoch": data.get("epoch"), "format": "training checkpoint"}
    else:
        gen, disc, info = data, None, {"format": "generator state dict"}
    gen = _strip_module_prefix(gen)
    missing = [k for k in GENERATOR_KEYS if k not in gen]
    if missing:
        raise ValueError(f"{path}: no generator weights of the authors' architecture (missing {missing}); "
                         f"keys found: {sorted(gen)[:8]}")
    return gen, (_strip_module_prefix(disc) if disc is not None else None), info


def generator_from_state(state: Mapping[str, torch.Tensor], source: str = "") -> PoseGenerator:
    """A `PoseGenerator` sized from the weights' shapes, loaded strictly."""
    hidden, latent_dim = state["bodyprior_dec_fc1.weight"].shape
    num_joints = state["bodyprior_dec_out.weight"].shape[0] // 6
    generator = PoseGenerator(latent_dim=latent_dim, hidden=hidden, num_joints=num_joints, dropout=0.1, slope=0.2)
    keys = {k: v for k, v in state.items() if not k.startswith(("rot_decoder.", "dropout."))}
    try:
        generator.load_state_dict(keys, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: generator weights do not fit the authors' architecture: {err}") from err
    return generator


def discriminator_from_state(state: Mapping[str, torch.Tensor], num_joints: int, source: str = "") -> PoseDiscriminator:
    """A `PoseDiscriminator` sized from the authors' discriminator weights (widths and depth), loaded strictly."""
    joint_features = state["comm_conv.0.weight"].shape[0]
    mlp = sorted(k for k in state if k.startswith("disc_poseall.fc_all_pose.") and k.endswith(".weight"))
    hidden = state[mlp[0]].shape[0]
    disc = PoseDiscriminator(num_joints=num_joints, joint_features=joint_features, hidden=hidden,
                             num_layers=len(mlp) - 1, slope=0.2)
    try:
        disc.load_state_dict(discriminator_state_from_authors(state, num_joints), strict=True)
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{source}: discriminator weights do not fit the authors' architecture: {err}") from err
    return disc


def convert_authors_checkpoint(source: str | os.PathLike, target: str | os.PathLike, latent: str,
                               latent_dim: int | None = None) -> GANPrior:
    """Write `target` (a "gan" prior file, with the discriminator when the checkpoint has one) from the
    authors' checkpoint `source`; `latent` is "S", "U" or "N", `latent_dim` (if given) is checked."""
    source = os.fspath(source)
    gen_state, disc_state, info = read_authors_checkpoint(source)
    generator = generator_from_state(gen_state, source)
    if latent_dim is not None and int(latent_dim) != generator.latent_dim:
        raise ValueError(f"{source}: the generator takes {generator.latent_dim}-d latents, not latent_dim={latent_dim}")
    prior = GANPrior(generator, make_latent(latent, generator.latent_dim),
                     provenance={"source_checkpoint": source, **{k: v for k, v in info.items() if v is not None}})
    extra: dict[str, Any] = {}
    if disc_state is not None:
        disc = discriminator_from_state(disc_state, generator.num_joints, source)
        extra = {"discriminator": {"class": type(disc).__name__, "kwargs": disc.arch_kwargs(),
                                   "state_dict": cpu_state_dict(disc)}}
    prior.save(target, extra_entries=extra)
    return prior


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior-convert-authors", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the authors' ckpt.pth / best.pth / generator state dict (.pth)")
    parser.add_argument("output", help="prior file to write (e.g. gan_s/prior.pt)")
    parser.add_argument("--latent", required=True, choices=sorted(LATENT_SPACES),
                        help="the latent space the generator was trained with (their config's latent type)")
    parser.add_argument("--latent-dim", type=int, default=None, help="checked against the weights (default: read)")
    args = parser.parse_args(argv)
    try:
        prior = convert_authors_checkpoint(args.checkpoint, args.output, args.latent, args.latent_dim)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: GAN-{prior.latent_type}, latent {prior.latent_dim}, "
          f"generator hidden {prior.generator.hidden}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
