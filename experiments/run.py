"""`pose-prior CONFIG [key=value ...]`: run the experiment a YAML describes.

CONFIG is a path to a YAML file or the name of one under `experiments/` (`gan_s`, `prepare_amass`).
The YAML's `task` selects the runner; every runner takes the validated config and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig

from experiments.config import EXPERIMENTS_DIR, ConfigError, load_config

# task -> "module:function"; imported lazily so `pose-prior --help` stays fast.
TASK_RUNNERS: dict[str, str] = {
    "demo-data": "datamodules.amass.demo:run_demo_data",
    "prepare-amass": "datamodules.amass.prepare:run_prepare_amass",
    "train-gan": "experiments.train_gan:run_train_gan",
    "train-vposer": "experiments.train_vposer:run_train_vposer",
    "train-gmm": "experiments.train_gmm:run_train_gmm",
    "eval-h36m": "experiments.eval_h36m:run_eval_h36m",
    "demo-h36m": "experiments.eval_h36m:run_demo_h36m",
}
TASK_RUNNERS.update({
    "demo-images": "datamodules.eft_demo:run_demo_images",
    "train-regressor": "experiments.regressor:run_train_regressor",
    "eval-regressor": "experiments.regressor:run_eval_regressor",
})

TASK_RUNNERS.update({
    "eval-coverage": "experiments.eval_coverage:run_eval_coverage",
    "eval-interp": "experiments.eval_interp:run_eval_interp",
    "compare": "experiments.compare:run_compare",
})


def resolve_config_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = EXPERIMENTS_DIR / f"{name.replace('-', '_')}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml") if not p.stem.startswith("_"))
    raise ConfigError(f"no experiment config '{name}': give a YAML path or one of {', '.join(known)}")


def runner_for(task: str) -> Callable[[DictConfig], object]:
    if task not in TASK_RUNNERS:
        raise ConfigError(f"task '{task}' has no runner; valid tasks: {', '.join(sorted(TASK_RUNNERS))}")
    module, func = TASK_RUNNERS[task].split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML (path, or name under experiments/)")
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
