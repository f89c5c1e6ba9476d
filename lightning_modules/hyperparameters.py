"""Flat hyperparameters (the form Lightning records in checkpoints) split back into settings dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def split_settings(owner: str, values: dict[str, Any], *classes: type) -> tuple[Any, ...]:
    """One instance of each dataclass in `classes` from the flat `values`; unknown names raise, naming the valid
    ones (and `seed`, which the modules take apart)."""
    keys = [{f.name for f in fields(cls)} for cls in classes]
    known = set().union(*keys)
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"{owner}: unknown hyperparameter(s) {unknown}; valid: {sorted(known | {'seed'})}")
    return tuple(cls(**{k: v for k, v in values.items() if k in names}) for cls, names in zip(classes, keys))
