"""Package attributes imported on first use, so `import pose_prior` (or a subpackage) stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, str], namespace: Mapping[str, Any]
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for a package whose `exports` map a public name to its module."""

    def getattr_(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    def dir_() -> list[str]:
        return sorted(list(namespace) + list(exports))

    return getattr_, dir_
