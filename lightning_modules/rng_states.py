"""Random streams of the training modules: per-step seeds for each rank, and RNG states in a checkpoint.

`seed_step_stream` reseeds torch's global generator at every training step from (seed, epoch, batch, rank):
- under DDP every rank draws its OWN latents, dropout masks and noise (`pl.seed_everything` gives every
  rank the same seed, so otherwise every GPU would generate the same fakes and add no fake diversity);
- a step's randomness depends only on those four numbers, not on what else drew from the generator
  before it (data loader iterators, validation, callbacks), so `resume=true` continues exactly.
`save_rng_states` / `restore_rng_states` carry the other consumers' states (numpy, python) across a resume.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def stream_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys by numpy's SeedSequence: distinct keys, independent streams."""
    hi, lo = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(hi) << 31) ^ int(lo)


def seed_step_stream(seed: int, epoch: int, batch_idx: int, rank: int) -> None:
    """Reseed torch's global generator (latents, dropout, reparameterisation noise) for this step and rank."""
    torch.manual_seed(stream_seed(seed, epoch, batch_idx, rank))


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
