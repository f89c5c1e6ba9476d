"""The one task table: every task has a schema and an importable runner, and agrees with the YAMLs and the Makefile."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.config import CONFIGS_DIR, load_config
from experiments.run import resolve_config_path
from experiments.tasks import TASKS

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT_YAMLS = sorted(p for p in CONFIGS_DIR.glob("*.yaml") if not p.name.startswith("_"))
SCHEMA_MODULES = sorted(f"experiments.schemas.{p.stem}" for p in (REPO / "experiments" / "schemas").glob("*.py")
                        if p.stem != "__init__")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_a_schema_and_an_importable_runner(name: str) -> None:
    task = TASKS[name]
    assert dataclasses.is_dataclass(task.schema)
    assert task.schema().task in TASKS  # the schema's own `task` default names a task of the table
    assert callable(task.load_runner())


def test_the_table_agrees_with_the_yaml_tasks() -> None:
    tasks = {load_config(p).task for p in EXPERIMENT_YAMLS}
    assert tasks == set(TASKS)


def test_the_table_agrees_with_the_makefile_targets() -> None:
    """Every `$(RUN) <config>` of the Makefile names a config whose task is in the table, and every task has one."""
    configs = re.findall(r"\$\(RUN\) ([\w-]+)", (REPO / "Makefile").read_text())
    assert configs
    tasks = {load_config(resolve_config_path(c)).task for c in configs}
    assert tasks == set(TASKS)


def test_yaml_configs_live_apart_from_the_code() -> None:
    assert not list((REPO / "experiments").glob("*.yaml")) and not (REPO / "experiments" / "sweeps").exists()
    assert EXPERIMENT_YAMLS and list((CONFIGS_DIR / "sweeps").glob("*.yaml"))


def test_setup_cfg_ships_the_configs() -> None:
    line = next(ln for ln in (REPO / "setup.cfg").read_text().splitlines() if ln.startswith("experiments ="))
    patterns = [p.strip() for p in line.split("=", 1)[1].split(",")]
    shipped = {p for pattern in patterns for p in (REPO / "experiments").glob(pattern)}
    assert set(CONFIGS_DIR.rglob("*.yaml")) <= shipped


@pytest.mark.parametrize("first", [*SCHEMA_MODULES, "experiments.tasks", "experiments.config"])
def test_schema_modules_import_in_any_order(first: str) -> None:
    """A fresh interpreter imports `first`, then every other schema module and the table: no import cycle."""
    rest = "; ".join(f"import {m}" for m in SCHEMA_MODULES)
    code = f"import {first}; {rest}; import experiments.tasks; assert len(experiments.tasks.TASKS) == {len(TASKS)}"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
