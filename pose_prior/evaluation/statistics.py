"""The statistics the paper reports for a set of distances or ratios: mean, variance, median (Tables 1-2).

All in float64 with numpy's definitions: the population variance (ddof = 0) and its square root, and the
true median (the mean of the two middle values for an even count, unlike `torch.median`, which returns
the lower one).
"""

from __future__ import annotations

import numpy as np
import torch


def summary_statistics(values: torch.Tensor | np.ndarray, prefix: str = "", unit: str = "") -> dict[str, float]:
    """{prefix}mean{unit}, {prefix}variance{unit}2, {prefix}std{unit}, {prefix}median{unit}, {prefix}count.

    An empty set gives count 0 and None for the others (never NaN: results files stay strict JSON)."""
    v = np.asarray(torch.as_tensor(values).detach().double().cpu()).reshape(-1)
    suffix2 = f"{unit}2" if unit else ""
    if v.size == 0:
        return {f"{prefix}mean{unit}": None, f"{prefix}variance{suffix2}": None, f"{prefix}std{unit}": None,
                f"{prefix}median{unit}": None, f"{prefix}count": 0}
    return {f"{prefix}mean{unit}": float(v.mean()), f"{prefix}variance{suffix2}": float(v.var()),
            f"{prefix}std{unit}": float(v.std()), f"{prefix}median{unit}": float(np.median(v)),
            f"{prefix}count": int(v.size)}
