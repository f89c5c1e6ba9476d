"""In-memory results back from spawned DDP workers (`strategy=ddp_spawn`).

Evaluation callbacks and modules keep their results on themselves (rank zero holds the merged ones).
With a spawn launcher the main process did not run the loop, so its objects hold nothing; Lightning
sends only `callback_metrics` back. This launcher also sends the `results_state()` of every callback and
of the module from rank zero, and hands each to `load_results_state` of its main-process counterpart.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

_KEY = "pose_prior_results"


def _carriers(trainer: pl.Trainer) -> list[Any]:
    """Callbacks then the module: the same order in the worker and in the main process (pickled trainer)."""
    return [*trainer.callbacks, trainer.lightning_module]


class _ResultsLauncher(_MultiProcessingLauncher):
    def get_extra_results(self, trainer: pl.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        states = [obj.results_state() if hasattr(obj, "results_state") else None for obj in _carriers(trainer)]
        extra[_KEY] = pickle.dumps(states)  # bytes: tensors must not go through the queue's shared memory
        return extra

    def update_main_process_results(self, trainer: pl.Trainer, extra: dict[str, Any]) -> None:
        super().update_main_process_results(trainer, extra)
        if _KEY not in extra:
            return
        for obj, state in zip(_carriers(trainer), pickle.loads(extra[_KEY])):
            if state is not None and hasattr(obj, "load_results_state"):
                obj.load_results_state(state)


def carry_results_back(trainer: pl.Trainer) -> pl.Trainer:
    """Make a spawn launcher bring the results of callbacks and module back; other launchers are left as is."""
    launcher = trainer.strategy.launcher
    if type(launcher) is _MultiProcessingLauncher:
        launcher.__class__ = _ResultsLauncher  # same state, two more steps when the workers finish
    return trainer
