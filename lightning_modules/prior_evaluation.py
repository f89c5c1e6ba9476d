"""A LightningModule that only holds a frozen prior, so evaluation callbacks run under any Lightning strategy.

`trainer.test(PriorEvaluationModule(prior), dataloaders=dummy_loader())` runs one no-op step per rank;
the evaluation itself happens in the callbacks' `on_test_epoch_end` (coverage, interpolation), where
Lightning has set up the process group, devices and loggers.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from pose_prior.priors.base import Prior


class PriorEvaluationModule(pl.LightningModule):
    """Holds `prior` (moved to the rank's device by Lightning); no parameters to train."""

    def __init__(self, prior: Prior) -> None:
        super().__init__()
        self.prior = prior

    def frozen_prior(self) -> Prior:
        """The prior the evaluation callbacks evaluate."""
        return self.prior

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        return None


def dummy_loader() -> DataLoader:
    """One item (Lightning gives each rank one through its DistributedSampler)."""
    return DataLoader(torch.zeros(1, 1), batch_size=1)
