"""Runner of `make compare PRIORS="a.pt b.pt ..."`: coverage and interpolation of several priors, side by side.

Each prior goes through the same runners as `make eval-coverage` / `make eval-interp` (output_dir/<name>/
coverage, output_dir/<name>/interpolation); then output_dir gets comparison.md, comparison.csv, one CDF
figure and one interpolation-curve figure for all priors, and a W&B table. With no priors given, small
GAN-S, GAN-U, GAN-N, VPoser and GMM priors are trained on the embedded default (or reused when
`train.run_dir/<name>/prior.pt` exists) through their own runners, then compared.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from callbacks.coverage import CoverageCallback
from callbacks.interpolation import InterpolationCallback
from experiments.config import CONFIGS_DIR, load_config, to_container
from experiments.eval_coverage import evaluate_prior_coverage
from experiments.eval_interp import evaluate_prior_interpolation
from experiments.evaluation import COVERAGE_COLUMNS, INTERP_COLUMNS, coverage_row, interp_row
from experiments.tables import print_table, table_markdown
from experiments.tasks import TASKS
from experiments.training import build_loggers, finish_loggers, prepare_run_dir
from pose_prior.io import atomic_write_text
from pose_prior.visual.plots import close, plot_distance_cdfs, plot_interpolation_curves

KIND_CONFIGS = {"gan_s": "gan_s.yaml", "gan_u": "gan_u.yaml", "gan_n": "gan_n.yaml", "vposer": "vposer.yaml",
                "gmm": "gmm.yaml"}


def _has(schema: Any, dotted: str) -> bool:
    node = schema
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return False
        f = fields[part]
        node = type(f.default_factory()) if f.default_factory is not dataclasses.MISSING else None
    return True


def train_small_priors(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Train (or reuse) the priors of `train.kinds` with their runners; returns (paths, names)."""
    from experiments.run import runner_for

    paths, names = [], []
    for kind in cfg.train.kinds:
        if kind not in KIND_CONFIGS:
            raise ValueError(f"train.kinds: unknown kind {kind!r}; known: {sorted(KIND_CONFIGS)}")
        run_dir = Path(cfg.train.run_dir) / kind
        prior = run_dir / "prior.pt"
        if not (cfg.train.reuse and prior.is_file()):
            yaml = CONFIGS_DIR / KIND_CONFIGS[kind]
            schema = TASKS[load_config(yaml).task].schema
            shared = {"data.amass_dir": cfg.data.amass_dir, "data.prepared_dir": cfg.data.prepared_dir,
                      "data.demo_dir": cfg.data.demo_dir, "body_model.path": cfg.body_model.path,
                      "body_model.model_type": cfg.body_model.model_type,
                      "logger.wandb_mode": cfg.logger.wandb_mode, "trainer.progress_bar": False}
            # a used folder without a prior (an interrupted or diverged run) is started again, not refused
            overrides = [f"output_dir={run_dir}", *(["overwrite=true"] if _has(schema, "overwrite") else [])] + [
                f"{k}={'null' if v is None else v}" for k, v in shared.items() if _has(schema, k)]
            overrides += list(cfg.train.overrides.get(kind, []))
            print(f"compare: training {kind} into {run_dir}")
            train_cfg = load_config(yaml, overrides)
            runner_for(train_cfg.task)(train_cfg)
        paths.append(str(prior))
        names.append(kind)
    return paths, names


def _sub_config(cfg: DictConfig, task: str, prior: str, out_dir: Path) -> DictConfig:
    """An eval-coverage / eval-interp config sharing compare's data, body model, sizes and trainer."""
    section = "coverage" if task == "eval-coverage" else "interpolation"
    node = OmegaConf.merge(OmegaConf.structured(TASKS[task].schema), {
        "prior": prior, "output_dir": str(out_dir), "data": cfg.data, "demo": cfg.demo,
        "body_model": cfg.body_model, section: cfg[section], "trainer": cfg.trainer,
        "logger": {**to_container(cfg.logger), "wandb_mode": "disabled"},
    })
    OmegaConf.set_readonly(node, True)
    return node


def _names(cfg: DictConfig, paths: list[str]) -> list[str]:
    if cfg.names:
        if len(cfg.names) != len(paths):
            raise ValueError(f"names: {len(cfg.names)} names for {len(paths)} priors")
        return list(cfg.names)
    names = [Path(p).parent.name or Path(p).stem for p in paths]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def run_compare(cfg: DictConfig) -> Path:
    out = prepare_run_dir(cfg)
    if cfg.priors:
        paths, names = [str(p) for p in cfg.priors], _names(cfg, [str(p) for p in cfg.priors])
    else:
        paths, names = train_small_priors(cfg)
    coverage: dict[str, CoverageCallback] = {}
    interp: dict[str, InterpolationCallback] = {}
    for name, path in zip(names, paths):
        _, cov = evaluate_prior_coverage(_sub_config(cfg, "eval-coverage", path, out / name / "coverage"))
        _, itp = evaluate_prior_interpolation(_sub_config(cfg, "eval-interp", path, out / name / "interpolation"))
        if cov is not None and itp is not None:  # rank zero holds the results
            coverage[name], interp[name] = cov, itp
    if not coverage:
        return out
    rows = [[name, *coverage_row(coverage[name].last_record), *interp_row(interp[name].last_record)]
            for name in coverage]
    columns = ["prior", *COVERAGE_COLUMNS, *INTERP_COLUMNS]
    write_comparison(out, columns, rows, coverage, interp, paths)
    print_table("Prior comparison (Eq. 5 distances in mm; Eq. 6 ratio)", columns, rows)
    log_comparison(cfg, out, comparison_numbers({n: c.last_record for n, c in coverage.items()},
                                                {n: i.last_record for n, i in interp.items()}, paths))
    print(f"comparison.md, comparison.csv and figures in {out}")
    return out


def comparison_numbers(coverage: dict[str, dict[str, Any]], interp: dict[str, dict[str, Any]],
                       paths: list[str]) -> list[dict[str, Any]]:
    """One flat record per prior (full precision) for the CSV, from the coverage and interpolation records."""
    records = []
    for (name, cov), path in zip(coverage.items(), paths):
        rec: dict[str, Any] = {"prior": name, "path": path, "kind": cov.get("prior", {}).get("kind")}
        for split in ("train", "test"):
            for metric in ("recall", "precision"):
                for stat in ("mean_mm", "std_mm", "median_mm"):
                    rec[f"{split}_{metric}_{stat}"] = cov.get(split, {}).get(metric, {}).get(stat)
        for key in ("ratio_mean", "ratio_std", "ratio_median", "pairs", "steps"):
            rec[f"interp_{key}"] = interp[name][key]
        records.append(rec)
    return records


def write_comparison(out: Path, columns: list[str], rows: list[list[str]], coverage: dict[str, CoverageCallback],
                     interp: dict[str, InterpolationCallback], paths: list[str]) -> None:
    """comparison.md, comparison.csv and the two figures, from the evaluations' in-memory results."""
    atomic_write_text(out / "comparison.md", table_markdown(columns, rows))
    records = comparison_numbers({n: c.last_record for n, c in coverage.items()},
                                 {n: i.last_record for n, i in interp.items()}, paths)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    curves, panels = {}, {"recall (train)": {}, "precision (train)": {}}
    for name, cov in coverage.items():
        panels["recall (train)"][name] = cov.last_result.recall["train"].distance_mm.numpy()
        panels["precision (train)"][name] = cov.last_result.precision["train"].distance_mm.numpy()
        curves[name] = np.asarray(interp[name].last_stats.mean_curve())
    close(plot_distance_cdfs(panels, out / "comparison_cdf.png"))
    close(plot_interpolation_curves(curves, out / "comparison_interpolation.png"))


def log_comparison(cfg: DictConfig, out: Path, records: list[dict[str, Any]]) -> None:
    """The comparison as one W&B run (offline unless logged in): a table with one numeric column per
    statistic (the names of comparison.csv, so W&B can sort and plot them), and the two figures."""
    from pytorch_lightning.loggers import WandbLogger

    columns = list(records[0])
    loggers = build_loggers(cfg, out)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key="comparison", columns=columns, data=[[r[c] for c in columns] for r in records])
            logger.log_image(key="comparison/plots", images=[str(out / "comparison_cdf.png"),
                                                             str(out / "comparison_interpolation.png")])
    finish_loggers(loggers)
