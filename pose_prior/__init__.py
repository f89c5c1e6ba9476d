"""pose_prior: the plain-PyTorch core of the framework (no Lightning).

Body model, rotations, latent spaces, networks, the frozen prior, GMM, metrics and fitting utilities.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names resolved lazily so `import pose_prior` stays light.
_EXPORTS = {
    "load_body_model": "pose_prior.body_model",
    "BodyModel": "pose_prior.body_model",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pose_prior' has no attribute '{name}'")


__all__ = sorted(_EXPORTS)
