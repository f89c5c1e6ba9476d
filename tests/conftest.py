"""Shared fixtures: CPU only, offline W&B, tiny sizes; expensive data built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)

# Session-scoped fixtures live in one plugin module per subject (each built once per session).
pytest_plugins = [
    "tests.fixtures.body_model",
    "tests.fixtures.amass",
]
