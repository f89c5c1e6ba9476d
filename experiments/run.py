"""`pose-prior CONFIG [key=value ...]`: run the experiment a YAML describes.

CONFIG is a path to a YAML file or the name of one under `experiments/configs/` (`gan_s`, `prepare_amass`).
The YAML's `task` selects the runner (experiments/tasks.py); every runner takes the validated config and nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from experiments.config import CONFIGS_DIR, REAL_DATA_KEYS, ConfigError, load_config
from experiments.sweep import agent_trial_overrides
from experiments.tasks import TASKS


def resolve_config_path(name: str) -> Path:
    """A YAML path as given, or the config of that name under experiments/configs/ (`gan_s`, `eval-h36m`)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = CONFIGS_DIR / f"{name.replace('-', '_')}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    raise ConfigError(f"no experiment config '{name}': give a YAML path or one of {', '.join(known)}")


def runner_for(task: str) -> Callable[[DictConfig], object]:
    if task not in TASKS:
        raise ConfigError(f"task '{task}' has no runner; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task].load_runner()


# Errors that are the user's to fix (a path that does not exist, a folder that cannot be written): a
# one-line message and exit code 2, like a config error. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, IsADirectoryError,
                                                NotADirectoryError, PermissionError)
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3


def debug_requested(argv_flag: bool) -> bool:
    return argv_flag or os.environ.get("POSE_PRIOR_DEBUG", "").strip() not in ("", "0", "false")


def data_source_note(cfg: DictConfig) -> str | None:
    """The first line of a run on the embedded default: which synthetic data and body model it uses."""
    present = [k for k in REAL_DATA_KEYS if OmegaConf.select(cfg, k, default="<absent>") != "<absent>"]
    if not present or any(OmegaConf.select(cfg, k) is not None for k in present):
        return None
    body = OmegaConf.select(cfg, "body_model.path", default=None)
    model = f", body model '{body}' (not SMPL)" if body in ("open", "open-light") else ""
    return (f"embedded default: synthetic data ({', '.join(present)} not set){model}; "
            "numbers check the machinery and are not comparable with published ones")


def _fail(code: int, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug or isinstance(exc, ConfigError) else " (--debug or POSE_PRIOR_DEBUG=1 shows the traceback)"
    print(f"error: {exc}{hint}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML (path, or name under experiments/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_epochs=3")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors (or POSE_PRIOR_DEBUG=1)")
    args = parser.parse_args(argv)
    debug = debug_requested(args.debug)
    try:
        # under a W&B sweep agent each trial gets its own run folder and name
        overrides = [*args.overrides, *agent_trial_overrides(args.overrides)]
        cfg = load_config(resolve_config_path(args.config), overrides)
    except ConfigError as exc:
        return _fail(EXIT_USER_ERROR, exc, debug)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    # imported here, not at the top: `--help` and config errors stay quick without Lightning
    from callbacks.divergence import TrainingDiverged
    from experiments.training import quiet_known_noise, say

    quiet_known_noise()
    note = data_source_note(cfg)
    if note:
        say(note)
    try:
        runner_for(cfg.task)(cfg)
    except USER_ERRORS as exc:  # a wrong value, a missing file, an unwritable folder: no traceback
        return _fail(EXIT_USER_ERROR, exc, debug)
    except TrainingDiverged as exc:
        return _fail(EXIT_DIVERGED, exc, debug)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
