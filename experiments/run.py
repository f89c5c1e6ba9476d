"""`pose-prior CONFIG [key=value ...]`: run the experiment a YAML describes.

CONFIG is a path to a YAML file or the name of one under `experiments/configs/` (`gan_s`, `prepare_amass`).
The YAML's `task` selects the runner (experiments/tasks.py); every runner takes the validated config and nothing else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from experiments.config import CONFIGS_DIR, ConfigError, load_config
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML (path, or name under experiments/configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_epochs=3")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(resolve_config_path(args.config), args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    try:
        runner_for(cfg.task)(cfg)
    except ConfigError as exc:  # a missing input the runner needs (e.g. prior.path): no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
