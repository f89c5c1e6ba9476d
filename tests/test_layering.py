"""Imports point down: the core knows nothing of Lightning or configs; nothing below `experiments/` imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_every_core_module_loads_neither_lightning_nor_omegaconf() -> None:
    child = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import pose_prior
        names = [m.name for m in pkgutil.walk_packages(pose_prior.__path__, "pose_prior.")]
        for name in names:
            importlib.import_module(name)
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("pytorch_lightning", "lightning", "omegaconf"))
        assert len(names) > 30, names
        assert not bad, bad
        """
    )
    subprocess.run([sys.executable, "-c", child], cwd=REPO, check=True, timeout=300)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_lower_layers_import_nothing_from_experiments() -> None:
    offenders = []
    for folder in ("pose_prior", "callbacks", "datamodules", "lightning_modules"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for name in _imported_modules(path):
                if name.split(".")[0] == "experiments":
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_core_imports_no_framework_package() -> None:
    offenders = []
    for path in sorted((REPO / "pose_prior").rglob("*.py")):
        for name in _imported_modules(path):
            if name.split(".")[0] in ("experiments", "callbacks", "datamodules", "lightning_modules",
                                      "pytorch_lightning", "lightning", "omegaconf"):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)
