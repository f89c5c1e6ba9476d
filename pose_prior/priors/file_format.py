"""The prior file (`prior.pt`): one envelope for every prior kind, and the registry that reads it back.

A prior file is a dict of tensors and plain Python values only, so `torch.load(weights_only=True)`
reads it and a malicious file cannot run code:

    {"format": "pose_prior", "format_version": 1, "kind": "gan" | "vposer" | "gmm" | <registered kind>,
     "latent": {"name": "S" | "U" | "N" | "pose", "dim": int},
     <the kind's own entries, e.g. "generator": {"class", "kwargs", "state_dict"}>,
     "provenance": {"date", "git_commit", "torch_version", "config", "data", ...}}

`write_prior_file` writes the envelope (atomically); `load_prior` checks it and hands the payload to the
loader registered for its `kind` (`register_prior_kind`). The built-in kinds are registered by module
path and imported on first use, so reading one kind does not import the others. docs/formats.md
describes the file for users.
"""

from __future__ import annotations

import datetime
import importlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pose_prior.io import atomic_save, load_tensors_file

if TYPE_CHECKING:  # pragma: no cover
    from pose_prior.priors.base import Prior

FORMAT = "pose_prior"
FORMAT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, key: str) -> Any:
    """Plain python / tensor values only (what torch.load(weights_only=True) reads back)."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): _check_plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_check_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"save_prior: provenance value {key} has type {type(value).__name__}; expected str, int, float, bool, "
        "None, a tensor, or lists / dicts of these (e.g. OmegaConf.to_container(cfg, resolve=True))"
    )


def git_commit(directory: str | os.PathLike | None = None) -> str | None:
    """Current git commit of `directory` (default: this package's checkout), or None outside git."""
    directory = directory or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stamp_provenance(*parts: dict | None) -> dict:
    """Merge provenance dicts (later wins), check they hold plain values, add date, git commit, torch."""
    merged: dict = {}
    for part in parts:
        merged.update(part or {})
    prov = _check_plain(merged, "provenance")
    prov.setdefault("date", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    prov.setdefault("git_commit", git_commit())
    prov.setdefault("torch_version", str(torch.__version__))  # TorchVersion is not weights_only-loadable
    return prov


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict, for a prior file."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def write_prior_file(
    path: str | os.PathLike, kind: str, latent_name: str, latent_dim: int, body: dict[str, Any],
    *provenance: dict | None,
) -> None:
    """Write a prior file of any kind atomically: the format envelope (format, version, kind, latent,
    provenance parts merged and stamped with date and git commit) around `body`, the kind's own entries
    (tensors and plain values only, so `torch.load(weights_only=True)` reads it)."""
    bad = nonfinite_tensors(body)
    if bad:  # a diverged run must not leave a prior behind that loads and then fails far away
        raise ValueError(f"{os.fspath(path)}: not written: non-finite values (NaN or inf) in {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
               "latent": {"name": latent_name, "dim": int(latent_dim)}, **body,
               "provenance": stamp_provenance(*provenance)}
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


def nonfinite_tensors(entries: Any, key: str = "") -> list[str]:
    """Dotted keys of the floating-point tensors in `entries` that hold NaN or inf."""
    if isinstance(entries, torch.Tensor):
        return [key] if entries.is_floating_point() and not bool(torch.isfinite(entries).all()) else []
    if isinstance(entries, dict):
        return [k for name, v in entries.items() for k in nonfinite_tensors(v, f"{key}.{name}" if key else str(name))]
    return []


# --- the registry ---------------------------------------------------------------------------------
PriorLoader = Callable[[dict, str], "Prior"]
# Built-in kinds: "module:function", imported on first use.
_BUILTIN_KINDS = {
    "gan": "pose_prior.priors.gan.prior:load_gan_payload",
    "vposer": "pose_prior.priors.vposer.prior:load_vposer_payload",
    "gmm": "pose_prior.priors.gmm.prior:load_gmm_payload",
    "gan_beta": "pose_prior.priors.shape.prior:load_gan_beta_payload",
    "gan_theta_beta": "pose_prior.priors.shape.prior:load_gan_theta_beta_payload",
}
PRIOR_LOADERS: dict[str, PriorLoader | str] = dict(_BUILTIN_KINDS)


def register_prior_kind(kind: str, loader: PriorLoader) -> None:
    """Make `load_prior` read files whose `kind` is `kind` with `loader(payload, path) -> Prior`."""
    PRIOR_LOADERS[kind] = loader


def prior_kinds() -> list[str]:
    """The kinds `load_prior` can read."""
    return sorted(PRIOR_LOADERS)


def _loader(kind: str) -> PriorLoader:
    loader = PRIOR_LOADERS[kind]
    if isinstance(loader, str):
        module, name = loader.split(":")
        loader = PRIOR_LOADERS[kind] = getattr(importlib.import_module(module), name)
    return loader


def check_payload(payload: Any, path: str, hint: str = "") -> dict:
    """The payload of a prior file, after checking its envelope (format, known kind, version)."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a prior file: expected a dict with 'format': '{FORMAT}', got {keys}."
                         f"{' ' + hint if hint else ''}")
    kind = payload.get("kind")
    if kind not in PRIOR_LOADERS:
        raise ValueError(f"{path}: unknown prior kind {kind!r}; known kinds: {prior_kinds()}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: prior format_version {version!r} is newer than this code ({FORMAT_VERSION})")
    bad = nonfinite_tensors({k: v for k, v in payload.items() if k != "provenance"})
    if bad:
        raise ValueError(f"{path}: refused: non-finite weights (NaN or inf) in {', '.join(bad[:5])}; "
                         "the run that wrote it diverged")
    return payload


def prior_from_payload(payload: dict, path: str = "<payload>", device: torch.device | str | None = None) -> Prior:
    """A prior from the dict a prior file holds (e.g. one embedded in a regressor checkpoint)."""
    payload = check_payload(payload, path)
    prior = _loader(payload["kind"])(payload, path)
    return prior.to(device) if device is not None else prior


def load_prior(path: str | os.PathLike, device: torch.device | str | None = None) -> Prior:
    """Load a prior file of any registered kind with torch.load(weights_only=True)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = os.path.join(path, "prior.pt")
        hint = f"pass {inside}" if os.path.isfile(inside) else "pass the prior.pt of a run folder"
        raise FileNotFoundError(f"{path}: is a directory, not a prior file; {hint}")
    hint = ""
    if path.endswith(".ckpt"):
        hint = ("A Lightning checkpoint is not a prior file: its run folder holds the prior.pt exported at the "
                "end of each epoch; resume the run (resume=true) to export one from its last checkpoint.")
    payload = check_payload(load_tensors_file(path, "a prior file", hint), path, hint)
    return prior_from_payload(payload, path, device)


def malformed(path: str, what: str, err: Exception) -> ValueError:
    """The error a loader raises for a file whose kind-specific entries do not fit."""
    return ValueError(f"{path}: malformed {what} prior file ({type(err).__name__}: {err})")


# --- architecture only: a prior file without its weights ------------------------------------------
_TENSOR_STUB = "__tensor__"


def architecture_of(prior: Prior) -> dict:
    """The prior file a prior would write, with every tensor replaced by its shape and dtype: plain values
    only (fit for hyperparameters), enough for `prior_from_architecture` to rebuild an untrained copy."""

    def stub(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return {_TENSOR_STUB: [list(value.shape), str(value.dtype).removeprefix("torch.")]}
        if isinstance(value, dict):
            return {k: stub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [stub(v) for v in value]
        return value

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": prior.kind,
            "latent": {"name": prior.latent_type, "dim": int(prior.latent_dim)}, **stub(prior.file_entries())}


def prior_from_architecture(spec: dict) -> Prior:
    """An untrained prior (zero tensors) of the architecture `architecture_of` described; its weights are
    then loaded with `load_state_dict` (e.g. from a checkpoint holding the prior as a submodule)."""

    def unstub(value: Any) -> Any:
        if isinstance(value, dict) and _TENSOR_STUB in value:
            shape, dtype = value[_TENSOR_STUB]
            return torch.zeros(shape, dtype=getattr(torch, dtype))
        if isinstance(value, dict):
            return {k: unstub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unstub(v) for v in value]
        return value

    if "format" not in spec:  # regressor checkpoints written before this function existed
        spec = _legacy_architecture(spec)
    return prior_from_payload(unstub(dict(spec)), "<architecture>")


def _legacy_architecture(spec: dict) -> dict:
    """An old regressor checkpoint's `prior_spec` ({"kind": "gan" | "vposer", architecture kwargs})."""
    from pose_prior.priors.gan.networks import PoseGenerator
    from pose_prior.priors.gan.prior import GANPrior
    from pose_prior.priors.latent import make_latent
    from pose_prior.priors.vposer.model import VPoser
    from pose_prior.priors.vposer.prior import VPoserPrior

    if spec.get("kind", "gan") == "vposer":
        return architecture_of(VPoserPrior(VPoser(**spec["vposer"])))
    return architecture_of(GANPrior(PoseGenerator(**spec["generator"]), make_latent(spec["latent"], int(spec["latent_dim"]))))
