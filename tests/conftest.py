"""Shared fixtures: CPU only, offline W&B, tiny sizes; expensive data built once per session."""

from __future__ import annotations

import os
from collections import Counter

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# One intra-op thread per process: the suite's problems are small, and when several processes share
# the 2 cores (DDP tests, a busy CI machine) OpenMP threads spinning against each other cost up to 30x.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def prior_loads(monkeypatch) -> Counter:
    """Loads of prior files by path, counted where every runner's `load_prior_file` reads the file."""
    import experiments.evaluation

    counts: Counter = Counter()
    real = experiments.evaluation.load_prior

    def counting(path, *args, **kwargs):
        counts[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(experiments.evaluation, "load_prior", counting)
    return counts

# Session-scoped fixtures live in one plugin module per subject (each built once per session).
pytest_plugins = [
    "tests.fixtures.body_model",
    "tests.fixtures.amass",
]
