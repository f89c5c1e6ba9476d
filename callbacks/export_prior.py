"""Write `prior.pt` (generator weights + latent space + architecture + provenance) during training."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from pose_prior.frozen_prior import save_prior


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


class PriorExportCallback(pl.Callback):
    """After every training epoch (and at the end), export the generator as a loadable prior."""

    def __init__(self, path: str | Path, provenance: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.provenance = dict(provenance or {})

    @rank_zero_only
    def _export(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        provenance = {
            **self.provenance,
            "epoch": int(trainer.current_epoch),
            "git_commit": git_commit(),
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        save_prior(self.path, module.generator, module.latent, provenance)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._export(trainer, pl_module)
