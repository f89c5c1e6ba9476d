"""Value checks the schema types cannot express: ranges, and choices of fields declared in the core.

omegaconf validates types and `Literal` choices while merging, but does not run `__post_init__`, and
the GAN `model` / `optim` sections are the core's plain dataclasses (`pose_prior.priors.gan.settings`).
`experiments.config.load_config` runs `check_values` once on the merged config: every rule whose key
the task has is applied, and every failure names the key, the value and what was expected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Names `pose_prior.body_model.load_body_model` resolves without a file.
BUILTIN_BODY_MODELS = ("open", "open-light")

Rule = tuple[Callable[[Any], bool], str]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def at_least(low: float) -> Rule:
    return (lambda v: _number(v) and v >= low), f"a number >= {low:g}"


def positive() -> Rule:
    return (lambda v: _number(v) and v > 0), "a number > 0"


def fraction(closed_top: bool = False) -> Rule:
    top = "]" if closed_top else ")"
    return (lambda v: _number(v) and 0 <= v and (v <= 1 if closed_top else v < 1)), f"a number in [0, 1{top}"


def optional(rule: Rule) -> Rule:
    check, expected = rule
    return (lambda v: v is None or check(v)), f"null or {expected}"


def one_of(*choices: str) -> Rule:
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def existing_path(kind: str = "file or folder") -> Rule:
    return (lambda v: v is None or os.path.exists(str(v))), f"an existing {kind}"


def body_model_path() -> Rule:
    return ((lambda v: v in BUILTIN_BODY_MODELS or os.path.exists(str(v))),
            f"{' or '.join(BUILTIN_BODY_MODELS)}, or an existing SMPL/SMPL-H file or folder")


# Every task shares the section names, so one table serves them all; a key a task lacks is skipped.
RULES: dict[str, Rule] = {
    # Trainer
    "trainer.max_epochs": at_least(1),
    "trainer.batches_per_epoch": optional(at_least(1)),
    "trainer.val_batches": optional(at_least(0)),
    "trainer.num_nodes": at_least(1),
    "trainer.log_every_n_steps": at_least(1),
    "trainer.checkpoint_every_n_epochs": at_least(1),
    # data
    "data.batch_size": at_least(1),
    "data.eval_batch_size": optional(at_least(1)),
    "data.num_workers": at_least(0),
    "data.vposer_keep_fraction": fraction(closed_top=True),
    "data.vposer_trim_fraction": fraction(),
    "data.target_fps": optional(positive()),
    "data.max_frames": optional(at_least(1)),
    "data.crop_res": at_least(1),
    "demo.sequences_per_subject": at_least(1),
    "demo.subjects_per_dataset": at_least(1),
    "demo.frames_per_sequence": at_least(1),
    "demo.framerate": positive(),
    "body_model.path": body_model_path(),
    # GAN model / optim (the core's GanSettings / GanOptimSettings)
    "model.latent": one_of("S", "U", "N"),
    "model.latent_dim": at_least(1),
    "model.gen_hidden": at_least(1),
    "model.gen_dropout": fraction(),
    "model.leaky_slope": at_least(0),
    "model.disc_joint_features": at_least(1),
    "model.disc_hidden": at_least(1),
    "model.d_steps": at_least(1),
    "model.joint_loss_weight": at_least(0),
    "model.pose_loss_weight": at_least(0),
    "optim.lr": positive(),
    "optim.d_lr": optional(positive()),
    "optim.beta1": fraction(),
    "optim.beta2": fraction(),
    "optim.weight_decay": at_least(0),
    "optim.plateau_patience": at_least(0),
    "optim.plateau_factor": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "optim.early_stop_patience": at_least(0),
    # VPoser
    "model.num_neurons": at_least(1),
    "loss.kl_weight": at_least(0),
    "loss.mesh_weight": at_least(0),
    "loss.matrot_weight": at_least(0),
    "loss.jtr_weight": at_least(0),
    "loss.keep_extra_until": at_least(0),
    # samples, coverage, interpolation
    "samples.num_bodies": at_least(1),
    "samples.every_n_epochs": at_least(1),
    "coverage.num_generated": at_least(1),
    "coverage.num_references": at_least(1),
    "coverage.num_precision": at_least(0),
    "coverage.chunk_size": at_least(1),
    "coverage.every_n_epochs": at_least(0),
    "interpolation.num_pairs": at_least(1),
    "interpolation.steps": at_least(2),
    "interpolation.batch_size": at_least(1),
    "interpolation.every_n_epochs": at_least(0),
    # GMM
    "gmm.n_components": at_least(1),
    "gmm.max_iter": at_least(1),
    "gmm.n_init": at_least(1),
    # regression
    "model.mlp_dropout": fraction(),
    "grid_images": at_least(0),
    "hmr.checkpoint": existing_path("HMR/SPIN/EFT checkpoint file"),
}


def check_values(cfg: DictConfig) -> list[str]:
    """One message per failed rule: "key=value: expected ..."."""
    absent = object()
    problems = []
    for key, (check, expected) in RULES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or OmegaConf.is_config(value):
            continue
        if not check(value):
            problems.append(f"{key}={value!r}: expected {expected}")
    return problems
