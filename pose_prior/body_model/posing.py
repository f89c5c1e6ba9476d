"""Posing any body model with a body pose given as rotation matrices or axis-angle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pose_prior.body_model.model import BodyModel


def as_vertices(out: Any) -> torch.Tensor:
    """Body model output -> (B, V, 3): an output with `.vertices` (BodyOutput, smplx), or a tensor."""
    return out.vertices if hasattr(out, "vertices") else out


def takes_matrices(body_model: nn.Module) -> bool:
    """Our BodyModel takes rotation matrices directly (no log map in the graph); other models take axis-angle."""
    return isinstance(body_model, BodyModel)


def posed_vertices(body_model: nn.Module, rotmats: torch.Tensor,
                   axis_angle: Callable[[], torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Vertices (B, V, 3) of `body_model` posed by body rotations (B, 21, 3, 3); a model that only takes
    axis-angle gets `axis_angle` (a (B, 63) tensor, or a function computing it only when needed)."""
    if takes_matrices(body_model):
        return as_vertices(body_model(rotmats))
    pose = axis_angle() if callable(axis_angle) else axis_angle
    return as_vertices(body_model(pose))
