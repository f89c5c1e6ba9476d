"""Config sections every task shares: body model, Trainer, loggers; and omegaconf copies of core dataclasses."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional


@dataclass
class BodyModelConfig:
    """Which body model evaluates poses: "open", "open-light", or a path to an SMPL/SMPL-H file."""

    path: str = "open"
    model_type: Literal["smpl", "smplh"] = "smpl"
    gender: Literal["neutral", "male", "female"] = "neutral"


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; DDP/SLURM come from Lightning's own strategies."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Any = 1  # int, list of ids, or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto picks DDP (find_unused_parameters) when more than one process
    max_epochs: int = 300
    batches_per_epoch: int = 1000  # an "epoch" is a fixed number of batches (authors: 1000)
    val_batches: int = 20
    precision: str = "32-true"
    log_every_n_steps: int = 50
    checkpoint_every_n_epochs: int = 10
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class LoggerConfig:
    """W&B (offline unless logged in) and plain CSV."""

    project: str = "pose-prior"
    name: Optional[str] = None
    # auto: online if logged in, else offline
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    entity: Optional[str] = None  # W&B team or user; null = the account's default entity
    group: Optional[str] = None  # W&B run group (e.g. one per sweep)
    tags: List[str] = field(default_factory=list)
    notes: Optional[str] = None
    log_prior_artifact: bool = True  # prior.pt as a W&B artifact at the end of a training run
    csv: bool = True


_SEQUENCES = (collections.abc.Sequence, list, tuple)


def config_dataclass(source: type, name: str) -> type:
    """A copy of the dataclass `source` that omegaconf accepts as a config section.

    Same field names, types and defaults; sequence fields (`Sequence[str]`, tuples) become `List[...]`
    with a list default, since omegaconf validates lists but not abstract sequences. The section then
    follows `source` by construction: a field added to it is a config key at once.
    """
    hints = typing.get_type_hints(source)
    specs = []
    for f in dataclasses.fields(source):
        kind: Any = hints[f.name]
        has_factory = f.default_factory is not dataclasses.MISSING
        if typing.get_origin(kind) in _SEQUENCES:
            args = [a for a in typing.get_args(kind) if a is not Ellipsis]
            kind = List[args[0] if args else Any]
            default = f.default_factory() if has_factory else f.default
            spec = field(default_factory=lambda d=default: list(d))
        elif has_factory:
            spec = field(default_factory=f.default_factory)
        else:
            spec = field(default=f.default)
        specs.append((f.name, kind, spec))
    made = dataclasses.make_dataclass(name, specs)
    made.__doc__ = f"{source.__module__}.{source.__qualname__} as a config section."
    return made
