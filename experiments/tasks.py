"""The one table of tasks: each task's config schema and its runner.

A YAML's `task:` key selects the entry: `experiments.config.load_config` validates the YAML against
`schema`, `pose-prior` (experiments/run.py) calls `runner`. Runners are "module:function" strings,
imported on first use, so `pose-prior --help` and config validation stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.schemas.baselines import TrainGmmConfig, TrainVPoserConfig
from experiments.schemas.data import DemoDataTaskConfig, PrepareAmassConfig
from experiments.schemas.evaluation import CompareConfig, EvalCoverageConfig, EvalInterpConfig
from experiments.schemas.gan import TrainGanConfig
from experiments.schemas.generation import EvalGenerationConfig, EvalIKConfig
from experiments.schemas.h36m import EvalH36MConfig
from experiments.schemas.regression import DemoImagesTaskConfig, EvalRegressorConfig, TrainRegressorConfig
from experiments.schemas.shape import EvalShapeConfig, TrainShapeGanConfig


@dataclass(frozen=True)
class Task:
    """A runnable task: the dataclass its config is validated against and its runner ("module:function")."""

    schema: type
    runner: str

    def load_runner(self) -> Callable[[DictConfig], object]:
        module, function = self.runner.split(":")
        return getattr(importlib.import_module(module), function)


TASKS: dict[str, Task] = {
    "demo-data": Task(DemoDataTaskConfig, "datamodules.amass.demo:run_demo_data"),
    "prepare-amass": Task(PrepareAmassConfig, "datamodules.amass.prepare:run_prepare_amass"),
    "train-gan": Task(TrainGanConfig, "experiments.train_gan:run_train_gan"),
    "train-shape-gan": Task(TrainShapeGanConfig, "experiments.train_shape_gan:run_train_shape_gan"),
    "train-vposer": Task(TrainVPoserConfig, "experiments.train_vposer:run_train_vposer"),
    "train-gmm": Task(TrainGmmConfig, "experiments.train_gmm:run_train_gmm"),
    "eval-coverage": Task(EvalCoverageConfig, "experiments.eval_coverage:run_eval_coverage"),
    "eval-interp": Task(EvalInterpConfig, "experiments.eval_interp:run_eval_interp"),
    "compare": Task(CompareConfig, "experiments.compare:run_compare"),
    "eval-generation": Task(EvalGenerationConfig, "experiments.eval_generation:run_eval_generation"),
    "eval-shape": Task(EvalShapeConfig, "experiments.eval_shape:run_eval_shape"),
    "eval-ik": Task(EvalIKConfig, "experiments.eval_ik:run_eval_ik"),
    "demo-h36m": Task(EvalH36MConfig, "experiments.eval_h36m:run_demo_h36m"),
    "eval-h36m": Task(EvalH36MConfig, "experiments.eval_h36m:run_eval_h36m"),
    "demo-images": Task(DemoImagesTaskConfig, "datamodules.eft_demo:run_demo_images"),
    "train-regressor": Task(TrainRegressorConfig, "experiments.regressor:run_train_regressor"),
    "eval-regressor": Task(EvalRegressorConfig, "experiments.regressor:run_eval_regressor"),
}
