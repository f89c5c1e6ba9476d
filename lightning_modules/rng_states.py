"""RNG states in a checkpoint, so `resume=true` continues the same random stream.

Stored as tensors and plain Python values only, so the checkpoint still loads with
`torch.load(weights_only=True)` (Lightning's default).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """Add torch, numpy and python RNG states to a Lightning checkpoint dict."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    checkpoint["rng_states"] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def restore_rng_states(checkpoint: dict[str, Any]) -> None:
    """Restore the states written by `save_rng_states` (no-op for checkpoints without them)."""
    states = checkpoint.get("rng_states")
    if not states:
        return
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
