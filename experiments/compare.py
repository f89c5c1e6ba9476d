"""Runner of `make compare PRIORS="a.pt b.pt ..."`: coverage, interpolation and generation metrics of
several priors, side by side.

Each prior goes through the same runners as `make eval-coverage` / `make eval-interp` / `make eval-generation`
(output_dir/<name>/coverage, .../interpolation, .../generation): Table 1 (recall and precision under Eq. 5,
mean ± std and median, train and test), Table 2 (interpolation smoothness, Eq. 6) and the generation
metrics of the `generation.conventions` (DPoser-X: FID / PRDC / APD / dNN; NRDF: FID / APD) at the
config's sizes. output_dir then gets comparison.md, comparison.csv (every statistic at full precision), one
CDF figure and one interpolation-curve figure for all priors, and a W&B table. `trainer.devices=N` runs every
evaluation under DDP (each process its share of the generated samples).

With no priors given, GAN-S, GAN-U, GAN-N, VPoser and the GMM are trained on the embedded default (or
reused when `train.run_dir/<name>/prior.pt` exists) through their own runners, each at its own
embedded-default budget (its YAML's `embedded_default:`; GAN: 8 x 600 iterations at batch 64, about 10
minutes of one core each), then compared.

The tables are sections keyed by what a prior yields (`Prior.yields`): body-pose priors (Tables 1-2 and the
generation metrics), and shape priors (GAN-beta, GAN-theta-beta, a POSE.pt+SHAPE.pt pair: eval-shape's table
against betas ~ N(0, I), sizes from the `shape` section) in a table of their own. Each table is
followed by the sizes behind its numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from callbacks.coverage import CoverageCallback
from callbacks.interpolation import InterpolationCallback
from experiments.config import CONFIGS_DIR, ConfigError, load_config
from experiments.eval_coverage import evaluate_prior_coverage
from experiments.eval_generation import evaluate_prior_generation
from experiments.eval_interp import evaluate_prior_interpolation
from experiments.evaluation import (
    COVERAGE_COLUMNS,
    INTERP_COLUMNS,
    coverage_row,
    interp_row,
    load_prior_file,
    log_wandb_table,
    sub_task_config,
)
from experiments.tables import print_table, table_markdown, write_csv
from experiments.tasks import TASKS
from experiments.training import prepare_run_dir
from pose_prior.io import atomic_write_text
from pose_prior.priors import Prior
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


def _unfinished_epochs(prior: Path, train_cfg: DictConfig) -> int | None:
    """Epochs a run folder's prior.pt is short of its config's `trainer.max_epochs` (a run stopped midway:
    the prior is written after every epoch), or None when it is complete or its config counts no epochs."""
    max_epochs = OmegaConf.select(train_cfg, "trainer.max_epochs")
    if max_epochs is None or not (prior.parent / "checkpoints" / "last.ckpt").is_file():
        return None
    done = (load_prior_file(str(prior), "train.run_dir").provenance or {}).get("epochs_completed")
    return int(max_epochs) - int(done) if isinstance(done, int) and done < max_epochs else None


def train_small_priors(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Train (or reuse) the priors of `train.kinds` with their runners; returns (paths, names).

    A run folder whose prior.pt is complete is reused (`train.reuse`); one stopped midway (fewer epochs
    than its config's, with a last.ckpt) is resumed; a folder without a prior is trained again."""
    from experiments.run import runner_for

    paths, names = [], []
    for kind in cfg.train.kinds:
        if kind not in KIND_CONFIGS:
            raise ValueError(f"train.kinds: unknown kind {kind!r}; known: {sorted(KIND_CONFIGS)}")
        run_dir = Path(cfg.train.run_dir) / kind
        prior = run_dir / "prior.pt"
        yaml = CONFIGS_DIR / KIND_CONFIGS[kind]
        schema = TASKS[load_config(yaml).task].schema
        shared = {"data.amass_dir": cfg.data.amass_dir, "data.prepared_dir": cfg.data.prepared_dir,
                  "data.demo_dir": cfg.data.demo_dir, "body_model.path": cfg.body_model.path,
                  "body_model.model_type": cfg.body_model.model_type,
                  "logger.wandb_mode": cfg.logger.wandb_mode, "trainer.progress_bar": False}
        overrides = [f"output_dir={run_dir}"] + [
            f"{k}={'null' if v is None else v}" for k, v in shared.items() if _has(schema, k)]
        overrides += list(cfg.train.overrides.get(kind, []))
        short = None
        if cfg.train.reuse and prior.is_file():
            short = _unfinished_epochs(prior, load_config(yaml, overrides))
            if short is None:
                paths.append(str(prior))
                names.append(kind)
                continue
        if short is not None and _has(schema, "resume"):
            print(f"compare: {prior} is {short} epoch(s) short of its config: resuming {kind}")
            overrides.append("resume=true")
        else:
            # a used folder without a prior (an interrupted or diverged run) is started again, not refused
            overrides += ["overwrite=true"] if _has(schema, "overwrite") else []
            print(f"compare: training {kind} into {run_dir}")
        train_cfg = load_config(yaml, overrides)
        runner_for(train_cfg.task)(train_cfg)
        paths.append(str(prior))
        names.append(kind)
    return paths, names


def _names(cfg: DictConfig, paths: list[str]) -> list[str]:
    if cfg.names:
        if len(cfg.names) != len(paths):
            raise ValueError(f"names: {len(cfg.names)} names for {len(paths)} priors")
        return list(cfg.names)
    names = [Path(p).parent.name or Path(p).stem for p in paths]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


@dataclass
class Section:
    """One table of the comparison: the priors yielding `yields`, evaluated by
    `table(paths, names, cfg, out_dir, files) -> (columns, rows, records)` (rows of strings for comparison.md,
    one flat full-precision record per prior for comparison.csv / W&B; `files` the prior files loaded so far
    in the run, by path), captioned by `note(cfg)`: the sizes behind its numbers."""

    yields: tuple[str, ...]
    title: str
    table: Callable[[list[str], list[str], DictConfig, Path, dict[str, Prior]],
                    tuple[list[str], list[list[str]], list[dict[str, Any]]]]
    note: Callable[[DictConfig], str]


def body_pose_comparison(paths: list[str], names: list[str], cfg: DictConfig, out: Path,
                         files: dict[str, Prior]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """Tables 1-2 and the generation metrics of body-pose priors; writes the two figures into `out`.
    Empty on ranks other than zero. The files in `files` are not loaded again."""
    coverage: dict[str, CoverageCallback] = {}
    interp: dict[str, InterpolationCallback] = {}
    generation: dict[str, list[dict[str, Any]]] = {}
    for name, path in zip(names, paths):
        prior = files.get(path)
        _, cov = evaluate_prior_coverage(sub_task_config(cfg, "eval-coverage", "coverage", prior=path,
                                                         output_dir=str(out / name / "coverage")), prior)
        _, itp = evaluate_prior_interpolation(sub_task_config(cfg, "eval-interp", "interpolation", prior=path,
                                                              output_dir=str(out / name / "interpolation")), prior)
        gen = (evaluate_prior_generation(cfg, path, name, out / name / "generation", prior)
               if cfg.generation.conventions else [])
        if cov is not None and itp is not None and gen is not None:  # rank zero holds the results
            coverage[name], interp[name], generation[name] = cov, itp, gen
    if not coverage:
        return [], [], []
    conventions = list(cfg.generation.conventions)
    columns = ["prior", *COVERAGE_COLUMNS, *INTERP_COLUMNS, *generation_columns(conventions)]
    rows = [[name, *coverage_row(coverage[name].last_record), *interp_row(interp[name].last_record),
             *generation_cells(generation[name], conventions)] for name in coverage]
    records = comparison_numbers({n: c.last_record for n, c in coverage.items()},
                                 {n: i.last_record for n, i in interp.items()}, paths, generation)
    write_figures(out, coverage, interp)
    return columns, rows, records


def shape_prior_comparison(paths: list[str], names: list[str], cfg: DictConfig, out: Path,
                           files: dict[str, Prior]) -> tuple[list[str], list[list[str]], list[dict[str, Any]]]:
    """The shape priors' table (eval-shape's, with its "normal" row, betas ~ N(0, I)), into `out`/shape;
    the files in `files` are not loaded again."""
    from experiments.eval_shape import TABLE_HEADERS, shape_comparison, shape_table_cells
    from pose_prior.evaluation.shape_evaluation import NORMAL

    _, rows = shape_comparison(paths, names, cfg, out / "shape", files)
    records = [{"prior": r["name"], "path": None if r["name"] == NORMAL else paths[names.index(r["name"])],
                **{f"shape_{k}": v for k, v in r.items() if k != "name"}} for r in rows]
    return list(TABLE_HEADERS), [shape_table_cells(r) for r in rows], records


def body_pose_sizes_note(cfg: DictConfig) -> str:
    """The sizes behind the body-pose table, for its caption (the published ones are larger)."""
    c, i, g = cfg.coverage, cfg.interpolation, cfg.generation
    parts = [f"Table 1: {c.num_generated:,} generated bodies, {c.num_references:,} references per split, "
             f"{c.num_precision:,} precision samples (paper: 6,000,000 / 10,000 / 10,000)",
             f"Table 2: {i.num_pairs} test pairs, {i.steps} meshes per path (paper: 100 pairs)"]
    if "dposer-x" in g.conventions:
        parts.append(f"DPoser-X: {g.dposer_x_samples:,} samples, PRDC real set {g.num_references:,} train poses, "
                     f"k={g.prdc_k}, APD on {g.apd_samples}, dNN of {g.dnn_samples} samples (published: 50,000 / "
                     "10,000 / 3 / 500)")
    if "nrdf" in g.conventions:
        parts.append(f"NRDF: {g.nrdf_samples:,} samples (published: 500)")
    return "Sizes: " + "; ".join(parts) + "."


def shape_sizes_note(cfg: DictConfig) -> str:
    """The sizes behind the shape table (compare's `shape` section)."""
    from experiments.eval_shape import sizes_note

    return sizes_note(cfg)


SECTIONS = [Section(("body_pose",), "Body-pose priors: Table 1 (Eq. 5, mm), Table 2 (Eq. 6 ratio), generation metrics",
                    body_pose_comparison, body_pose_sizes_note),
            Section(("betas", "body_pose+betas"), "Shape priors against betas ~ N(0, I) (supplement D; Eq. 5, mm; "
                    "Eq. 6 ratio)", shape_prior_comparison, shape_sizes_note)]


def _yields_of(entry: str, files: dict[str, Prior]) -> str:
    """What a `priors` entry yields; POSE.pt+SHAPE.pt is the disentangled pose-and-shape pair. The files it
    loads are added to `files` (by path), one found there is not loaded again."""
    from experiments.eval_shape import PAIR_SEPARATOR, load_shape_entry

    if PAIR_SEPARATOR in entry:
        return load_shape_entry(entry, files).yields
    if entry not in files:
        files[entry] = load_prior_file(entry, "priors")
    return files[entry].yields


def sections_of(paths: list[str], names: list[str], files: dict[str, Prior]
                ) -> list[tuple[Section, list[str], list[str]]]:
    """(section, paths, names) per section with priors, in SECTIONS order; a prior no section takes is refused.
    The prior files it loads are kept in `files`, by path, for the sections."""
    by_section: dict[int, tuple[list[str], list[str]]] = {}
    for path, name in zip(paths, names):
        yields = _yields_of(path, files)
        index = next((i for i, s in enumerate(SECTIONS) if yields in s.yields), None)
        if index is None:
            known = sorted(y for s in SECTIONS for y in s.yields)
            raise ConfigError(f"priors: {path} yields {yields!r}; compare tables priors yielding {known}")
        by_section.setdefault(index, ([], []))
        by_section[index][0].append(path)
        by_section[index][1].append(name)
    return [(SECTIONS[i], *by_section[i]) for i in sorted(by_section)]


def run_compare(cfg: DictConfig) -> Path:
    files: dict[str, Prior] = {}  # each prior file loaded once per run
    if cfg.priors:
        paths = [str(p) for p in cfg.priors]
        names = _names(cfg, paths)
        groups = sections_of(paths, names, files)  # before anything is written: a refused prior leaves no folder
    else:
        groups = None
    out = prepare_run_dir(cfg)
    if groups is None:
        paths, names = train_small_priors(cfg)
        groups = sections_of(paths, names, files)
    tables, records = [], []
    for section, s_paths, s_names in groups:
        columns, rows, recs = section.table(s_paths, s_names, cfg, out, files)
        if rows:
            tables.append((section.title, columns, rows, section.note(cfg)))
            records += recs
    if not tables:  # not rank zero
        return out
    write_comparison(out, tables, records)
    for title, columns, rows, note in tables:
        print_table(title, columns, rows)
        print(note)
    log_comparison(cfg, out, records)
    print(f"comparison.md, comparison.csv and figures in {out}")
    return out


def generation_columns(conventions: list[str]) -> list[str]:
    cols = []
    for conv in conventions:
        label = GEN_LABEL[conv]
        cols += [f"{m} ({label})" for m in GEN_METRICS[conv]]
    return cols


def generation_cells(records: list[dict[str, Any]], conventions: list[str]) -> list[str]:
    by_conv = {r["convention"]: r for r in records}
    cells = []
    for conv in conventions:
        r = by_conv.get(conv, {})
        cells += ["-" if r.get(key) is None else f"{r[key]:{fmt}}" for key, fmt in GEN_METRICS[conv].values()]
    return cells


# metric column label -> (record key, format), per convention
GEN_METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "dposer-x": {"FID": ("fid", ".3f"), "prec.": ("precision", ".3f"), "recall": ("recall", ".3f"),
                 "density": ("density", ".3f"), "coverage": ("coverage", ".3f"), "APD cm": ("apd_cm", ".2f"),
                 "dNN rad": ("dnn", ".3f")},
    "nrdf": {"FID": ("fid", ".4f"), "APD cm": ("apd_cm", ".2f")},
}
GEN_LABEL = {"dposer-x": "DPoser-X", "nrdf": "NRDF"}


def comparison_numbers(coverage: dict[str, dict[str, Any]], interp: dict[str, dict[str, Any]],
                       paths: list[str], generation: dict[str, list[dict[str, Any]]] | None = None
                       ) -> list[dict[str, Any]]:
    """One flat record per prior (full precision) for the CSV, from the coverage, interpolation and
    generation records."""
    records = []
    for (name, cov), path in zip(coverage.items(), paths):
        desc = cov.get("prior", {})
        rec: dict[str, Any] = {"prior": name, "path": path, "kind": desc.get("kind"),
                               "trained_epochs": desc.get("trained_epochs"),
                               "trained_global_step": desc.get("trained_global_step")}
        for split in ("train", "test"):
            for metric in ("recall", "precision"):
                for stat in ("mean_mm", "std_mm", "median_mm"):
                    rec[f"{split}_{metric}_{stat}"] = cov.get(split, {}).get(metric, {}).get(stat)
        for key in ("ratio_mean", "ratio_std", "ratio_median", "pairs", "steps"):
            rec[f"interp_{key}"] = interp[name][key]
        for g in (generation or {}).get(name, []):
            conv = g["convention"].replace("-", "_")
            for key in ("num_samples", "fid", "precision", "recall", "density", "coverage", "apd_cm", "dnn"):
                if key in g:
                    rec[f"{conv}_{key}"] = g[key]
        records.append(rec)
    return records


def write_comparison(out: Path, tables: list[tuple[str, list[str], list[list[str]], str]],
                     records: list[dict[str, Any]]) -> None:
    """comparison.md (per section (title, columns, rows, note): its table, then its sizes note) and
    comparison.csv (one row per prior; the union of the sections' fields)."""
    md = [f"{table_markdown(columns, rows)}\n{note}\n" if len(tables) == 1
          else f"## {title}\n\n{table_markdown(columns, rows)}\n{note}\n" for title, columns, rows, note in tables]
    atomic_write_text(out / "comparison.md", "\n".join(md))
    write_csv(out / "comparison.csv", records, record_fields(records))


def record_fields(records: list[dict[str, Any]]) -> list[str]:
    """The union of the records' keys, in first-seen order: the columns of comparison.csv and the W&B table."""
    fields: list[str] = []
    for rec in records:
        fields += [k for k in rec if k not in fields]
    return fields


def write_figures(out: Path, coverage: dict[str, CoverageCallback], interp: dict[str, InterpolationCallback]) -> None:
    """The recall / precision CDFs and the interpolation curves of all priors, from the in-memory results."""
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
    figures = [str(p) for p in (out / "comparison_cdf.png", out / "comparison_interpolation.png") if p.is_file()]
    log_wandb_table(cfg, out, "comparison", record_fields(records), records, figures)
