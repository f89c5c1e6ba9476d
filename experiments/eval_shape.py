"""Runner of `make eval-shape PRIOR="a.pt b.pt pose.pt+shape.pt"`: shape priors (paper supplement D) beside
SMPL's own unbounded prior, betas ~ N(0, I) (always the first row, "normal").

A prior entry is a GAN-beta or GAN-theta-beta prior.pt, or POSE.pt+SHAPE.pt for the disentangled pair (a
pose prior such as GAN-S with a GAN-beta). Per row (`pose_prior.evaluation.shape_evaluation`):
- recall and precision under Eq. 5 (mm) on bodies in the zero pose with their betas, against the shape
  split `shape.split` of the configured shape source (the open shape set on the embedded default);
- for the rows that yield a pose (GAN-theta-beta, the pair): the same on posed bodies, against split poses
  of AMASS each with an independently drawn split shape; the "normal" row gets posed numbers with the
  poses of the first pair (else of the first pose-yielding row) and N(0, I) betas: the same poses with
  the unbounded shape prior;
- interpolation smoothness (Eq. 6) along seeded random latent paths (SLERP for the spherical latents);
- figures: distance CDFs (shape_cdf.png), a t-SNE of generated and train betas per row (supp. Fig. 12,
  tsne_<row>.png), drawn samples (supp. Figs. 10-11, samples_<row>.png) and interpolation paths
  (interp_<row>.png).
Writes results.json (strict JSON), shape.csv, shape.md, the figures, csv/metrics.csv and the W&B run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.shapes.datamodule import ShapeDataModule
from experiments.config import ConfigError, to_container
from experiments.evaluation import (
    body_model_mismatch,
    body_model_of,
    load_prior_file,
    load_splits,
    prior_description,
)
from experiments.schemas.shape import ShapeDataConfig, ShapeEvalSizesConfig
from experiments.tables import print_table, table_markdown, write_csv
from experiments.training import build_loggers, finish_loggers, prepare_run_dir, say
from pose_prior.evaluation.interpolation import interpolation_stats
from pose_prior.evaluation.shape_coverage import evaluate_shape_coverage, shape_vertices
from pose_prior.evaluation.shape_evaluation import (
    NORMAL,
    ShapeDraw,
    check_shape_prior,
    draw_bodies,
    interpolation_bodies,
    is_posed,
    shape_interpolation,
)
from pose_prior.io import atomic_write_json, atomic_write_text
from pose_prior.priors import Prior
from pose_prior.priors.shape.pair import PoseShapePair
from pose_prior.rows import sample_rows, take_rows
from pose_prior.visual.plots import close, plot_distance_cdfs, plot_tsne, save_figure, tsne_embedding
from pose_prior.visual.render import render_bodies, render_sequences

COLUMNS = ["name", "kind", "recall_mm", "recall_median_mm", "precision_mm", "precision_median_mm",
           "posed_recall_mm", "posed_precision_mm", "interp_ratio", "interp_ratio_median"]
TABLE_HEADERS = ["prior", "kind", "recall", "median", "precision", "median", "posed recall", "posed precision",
                 "interp. ratio", "median"]
PAIR_SEPARATOR = "+"


def prior_entries(cfg: DictConfig) -> list[str]:
    """`prior` then `priors` of the config; each a prior file, or POSE.pt+SHAPE.pt (both files existing)."""
    paths = ([cfg.prior] if cfg.get("prior") else []) + list(cfg.get("priors") or [])
    if not paths:
        raise ConfigError("prior: no shape prior given; run `make eval-shape PRIOR=path/to/prior.pt` "
                          "(several: PRIOR=\"a.pt b.pt\"; the pair: PRIOR=gan_s/prior.pt+gan_beta/prior.pt)")
    for entry in paths:
        for part in str(entry).split(PAIR_SEPARATOR):
            if not Path(part).is_file():
                raise ConfigError(f"prior: {part} does not exist (expected a prior.pt written by a training run"
                                  f"{'' if PAIR_SEPARATOR not in str(entry) else ', in POSE.pt+SHAPE.pt'})")
    return [str(p) for p in paths]


def entry_name(entry: str) -> str:
    """Row label of a prior entry: its run folder's name (pose+shape folders for a pair)."""
    return PAIR_SEPARATOR.join(Path(p).parent.name or Path(p).stem for p in entry.split(PAIR_SEPARATOR))


def load_shape_entry(entry: str, files: dict[str, Prior] | None = None) -> Prior:
    """A shape prior file, or a pose prior and a GAN-beta file joined into the disentangled pair. `files`
    holds the files loaded so far in this run, by path: a file in it is not loaded again, one loaded is added."""
    files = {} if files is None else files
    parts = entry.split(PAIR_SEPARATOR)
    if len(parts) > 2:
        raise ConfigError(f"prior={entry}: a pair is POSE.pt+SHAPE.pt (two files), got {len(parts)}")
    for part in parts:
        if part not in files:
            files[part] = load_prior_file(part)
    priors = [files[p] for p in parts]
    if len(priors) == 2:
        try:
            prior: Prior = PoseShapePair(*priors)
        except ValueError as exc:
            raise ConfigError(f"prior={entry}: {exc}") from exc
    else:
        prior = priors[0]
    try:
        check_shape_prior(prior, f"prior={entry}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return prior.eval()


def load_shape_entries(entries: list[str], files: dict[str, Prior] | None = None) -> dict[str, Prior]:
    """{entry: `load_shape_entry(entry, files)`}: each file loaded once, a file of two entries shared."""
    files = {} if files is None else files
    return {entry: load_shape_entry(entry, files) for entry in entries}


def _sizes(cfg: DictConfig) -> DictConfig:
    """The `shape` section, or its schema defaults (a config of another task, e.g. compare's)."""
    base = OmegaConf.structured(ShapeEvalSizesConfig)
    given = cfg.get("shape")
    s = OmegaConf.merge(base, given) if given is not None else base
    for key in ("num_generated", "num_posed_references", "chunk_size", "interp_steps"):
        if int(s[key]) < (2 if key == "interp_steps" else 1):
            raise ConfigError(f"shape.{key}={s[key]}: expected an integer >= {2 if key == 'interp_steps' else 1}")
    for key in ("interp_pairs", "tsne_points", "render_samples", "render_pairs"):
        if int(s[key]) < 0:
            raise ConfigError(f"shape.{key}={s[key]}: expected an integer >= 0")
    return s


def sizes_note(cfg: DictConfig) -> str:
    """The sizes behind the shape table (the `shape` section, its defaults where absent), for its caption."""
    s = _sizes(cfg)
    refs = "every" if s.num_references is None else f"{int(s.num_references):,}"
    parts = [f"Shape table: {int(s.num_generated):,} bodies per row against {refs} {s.split} shapes"]
    if s.posed:
        parts.append(f"posed: up to {int(s.num_posed_references):,} {s.split} poses, each with a {s.split} shape "
                     "(rows yielding a pose, and N(0, I) with their poses)")
    if int(s.interp_pairs) > 0:
        parts.append(f"Eq. 6: {int(s.interp_pairs)} random latent paths, {int(s.interp_steps)} bodies per path")
    return "Sizes: " + "; ".join(parts) + "."


def _shape_data(cfg: DictConfig) -> ShapeDataModule:
    """The shape source of `cfg.data` (schema defaults where a key is absent: the open shape set)."""
    d = OmegaConf.merge(OmegaConf.structured(ShapeDataConfig), {k: v for k, v in cfg.data.items()
                                                                  if k.startswith("shapes_")})
    return ShapeDataModule(source=d.shapes_source, path=d.shapes_path, gender=d.shapes_gender, seed=int(d.shapes_seed),
                           valid_fraction=float(d.shapes_valid_fraction), test_fraction=float(d.shapes_test_fraction))


def posed_references(cfg: DictConfig, betas: torch.Tensor, count: int, seed: int, split: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 63) seeded poses of the AMASS split, each with an independently drawn shape of `betas`."""
    sources = load_splits(cfg, (split,))
    if split not in sources:
        raise ConfigError(f"data.prepared_dir={cfg.data.prepared_dir}: the {split} split of poses is needed for "
                          "posed shape coverage (or shape.posed=false)")
    poses = sources[split]
    rng = np.random.default_rng(seed + 1)
    pose_rows = np.sort(rng.choice(len(poses), size=min(count, len(poses)), replace=False))
    shape_rows = rng.integers(0, betas.shape[0], size=len(pose_rows))
    return take_rows(poses, pose_rows), betas[torch.from_numpy(shape_rows)]


def evaluate_sources(cfg: DictConfig, entries: list[str], names: list[str], priors: dict[str, Prior],
                     body_model: torch.nn.Module, out_dir: Path
                     ) -> tuple[list[dict[str, Any]], dict[str, Any], list[Path]]:
    """Every metric and figure of the "normal" row and each entry (its prior in `priors`): (rows of results,
    shared metadata, PNGs)."""
    s = _sizes(cfg)
    shapes = _shape_data(cfg)
    refs_all = shapes.betas(s.split)
    ref_rows = sample_rows(refs_all.shape[0], s.num_references, s.seed)
    refs = refs_all[torch.from_numpy(ref_rows)]
    train_betas = shapes.betas("train")
    sources: list[tuple[str, str | None, Prior | None]] = [(NORMAL, None, None)]
    for entry, name in zip(entries, names):
        sources.append((name, entry, priors[entry]))
    posed_any = bool(s.posed) and any(is_posed(p) for _, _, p in sources)
    posed_refs = posed_references(cfg, refs, int(s.num_posed_references), int(s.seed), s.split) if posed_any else None
    draws: dict[str, ShapeDraw] = {n: draw_bodies(p, int(s.num_generated), int(s.seed)) for n, _, p in sources}
    # N(0, I) posed with a pair's pose prior (the pair with its shape part swapped for N(0, I)), else with
    # the first pose-yielding prior's poses
    posed_sources = [n for n, _, p in sources if is_posed(p)] if posed_any else []
    pairs = [n for n, _, p in sources if isinstance(p, PoseShapePair)] if posed_any else []
    borrowed = (pairs or posed_sources or [None])[0]
    if borrowed is not None:  # the same poses with unbounded shapes
        draws[NORMAL] = ShapeDraw(draws[NORMAL].betas, draws[borrowed].body_pose)
    faces = body_model.faces.cpu().numpy() if hasattr(body_model, "faces") else None
    rows, pictures = [], []
    cdf_zero: dict[str, dict[str, torch.Tensor]] = {"recall, zero pose": {}, "precision, zero pose": {}}
    cdf_posed: dict[str, dict[str, torch.Tensor]] = {"recall, posed": {}, "precision, posed": {}}
    for name, entry, prior in sources:
        say(f"eval-shape: {name}")
        draw = draws[name]
        zero = evaluate_shape_coverage(draw.betas, refs, body_model, chunk=int(s.chunk_size), method=s.method)
        cdf_zero["recall, zero pose"][name] = zero.recall.distance_mm
        cdf_zero["precision, zero pose"][name] = zero.precision.distance_mm
        record: dict[str, Any] = {
            "name": name, "kind": NORMAL if prior is None else prior.kind, "entry": entry,
            "prior": None if prior is None else _describe(entry, prior),
            "zero_pose": zero.summary(), "posed": None, "interpolation": None,
        }
        if posed_refs is not None and draw.body_pose is not None:
            posed = evaluate_shape_coverage(draw.betas, posed_refs[1], body_model, chunk=int(s.chunk_size),
                                            method=s.method, generated_poses=draw.body_pose,
                                            reference_poses=posed_refs[0])
            record["posed"] = {**posed.summary(), "poses_from": name if prior is not None else borrowed}
            cdf_posed["recall, posed"][name] = posed.recall.distance_mm
            cdf_posed["precision, posed"][name] = posed.precision.distance_mm
        if int(s.interp_pairs) > 0:
            stats = shape_interpolation(prior, body_model, int(s.interp_pairs), int(s.interp_steps), int(s.seed))
            record["interpolation"] = {**stats.summary(), "posed": is_posed(prior),
                                       "mean_curve": stats.mean_curve().tolist()}
        rows.append(record)
        pictures += _row_figures(name, prior, draw, train_betas, body_model, faces, s, out_dir)
    panels = {**cdf_zero, **{k: v for k, v in cdf_posed.items() if v}}
    pictures.insert(0, out_dir / "shape_cdf.png")
    close(plot_distance_cdfs(panels, pictures[0]))
    meta = {"units": "mm", "split": s.split, "num_references": int(refs.shape[0]),
            "reference_rows": ref_rows.tolist() if s.num_references is not None else "all",
            "num_posed_references": None if posed_refs is None else int(posed_refs[0].shape[0]),
            "normal_posed_with_poses_of": borrowed, "shapes": shapes.manifest["source"],
            "sizes": to_container(s), "body_model": to_container(cfg.body_model)}
    return rows, meta, pictures


def _describe(entry: str, prior: Prior) -> dict[str, Any]:
    if isinstance(prior, PoseShapePair):
        pose_path, shape_path = entry.split(PAIR_SEPARATOR)
        return {"kind": prior.kind, "pose": prior_description(pose_path, prior.pose),
                "shape": prior_description(shape_path, prior.shape)}
    return prior_description(entry, prior)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _row_figures(name: str, prior: Prior | None, draw: ShapeDraw, train_betas: torch.Tensor,
                 body_model: torch.nn.Module, faces: np.ndarray | None, s: DictConfig, out_dir: Path) -> list[Path]:
    """t-SNE of the row's betas with the train betas; drawn bodies; interpolation paths."""
    out: list[Path] = []
    label = f"{name} ({'N(0, I)' if prior is None else prior.kind})"
    if int(s.tsne_points) > 0:
        emb, is_gen = tsne_embedding(draw.betas, train_betas, int(s.tsne_points), int(s.seed), float(s.tsne_perplexity))
        out.append(out_dir / f"tsne_{_safe(name)}.png")
        close(plot_tsne(emb, is_gen, out[-1], title=f"t-SNE of betas: {label}"))
    if faces is None:
        return out
    k = min(int(s.render_samples), draw.betas.shape[0])
    if k > 0:
        poses = None if draw.body_pose is None or prior is None else draw.body_pose[:k]
        verts = shape_vertices(body_model, draw.betas[:k], body_pose=poses).cpu().numpy()
        out.append(out_dir / f"samples_{_safe(name)}.png")
        fig = render_bodies(verts, faces, None, titles=[f"sample {i}" for i in range(k)])
        fig.suptitle(f"{label}: random samples{'' if poses is not None else ', zero pose'}", fontsize=9, y=1.02)
        save_figure(fig, out[-1], dpi=80)
        close(fig)
    if int(s.render_pairs) > 0:
        verts, _ = interpolation_bodies(prior, body_model, int(s.render_pairs), int(s.interp_steps), int(s.seed) + 7)
        curves = interpolation_stats(verts.double()).normalised.numpy()
        out.append(out_dir / f"interp_{_safe(name)}.png")
        close(render_sequences(verts.cpu().numpy(), faces, curves, out[-1],
                               row_titles=[f"{label}: random path {i}" for i in range(len(verts))]))
    return out


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def table_rows(records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per record, keyed by COLUMNS (numbers in mm; None where not measured)."""
    out = []
    for r in records:
        z, p, i = r["zero_pose"], r.get("posed"), r.get("interpolation")
        out.append({
            "name": r["name"], "kind": r["kind"],
            "recall_mm": _num(z["recall"]["mean_mm"]), "recall_median_mm": _num(z["recall"]["median_mm"]),
            "precision_mm": _num(z["precision"]["mean_mm"]), "precision_median_mm": _num(z["precision"]["median_mm"]),
            "posed_recall_mm": _num(p["recall"]["mean_mm"]) if p else None,
            "posed_precision_mm": _num(p["precision"]["mean_mm"]) if p else None,
            "interp_ratio": _num(i["ratio_mean"]) if i else None,
            "interp_ratio_median": _num(i["ratio_median"]) if i else None,
        })
    return out


def shape_table_cells(row: Mapping[str, Any]) -> list[str]:
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    return [row["name"], row["kind"], f(row["recall_mm"]), f(row["recall_median_mm"]), f(row["precision_mm"]),
            f(row["precision_median_mm"]), f(row["posed_recall_mm"]), f(row["posed_precision_mm"]),
            f(row["interp_ratio"], 2), f(row["interp_ratio_median"], 2)]


def write_tables(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """shape.csv (full precision) and shape.md (the printed table)."""
    write_csv(out_dir / "shape.csv", rows, COLUMNS)
    note = ("Eq. 5 distances in mm (mean; medians beside), zero pose unless 'posed'; interpolation: Eq. 6 ratio "
            "along random latent paths (1 = even steps).\n\n")
    atomic_write_text(out_dir / "shape.md", note + table_markdown(TABLE_HEADERS, [shape_table_cells(r) for r in rows]))


def evaluate_shape_priors(paths: list[str], names: list[str], cfg: DictConfig, out_dir: Path,
                          files: dict[str, Prior] | None = None) -> tuple[list[dict[str, Any]], list[Path]]:
    """The eval-shape rows of `paths` (labels `names`, or from the paths when empty) after the N(0, I) row,
    with `cfg`'s body model, data and `shape` section (its defaults where absent); writes results.json,
    shape.csv, shape.md and the figures into `out_dir`. Returns (rows keyed by COLUMNS, figure paths).
    `files`: prior files the caller has loaded already, by path (each file is loaded once per run)."""
    entries = prior_entries(OmegaConf.create({"prior": None, "priors": list(paths)}))
    names = list(names) or [entry_name(e) for e in entries]
    if len(names) != len(entries):
        raise ConfigError(f"names: {len(names)} labels for {len(entries)} priors")
    if len(set(names)) != len(names) or NORMAL in names:
        raise ConfigError(f"names: row labels must be distinct and not {NORMAL!r}, got {names}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body_model = body_model_of(cfg)
    files = {} if files is None else files
    priors = load_shape_entries(entries, files)
    for part in dict.fromkeys(p for e in entries for p in e.split(PAIR_SEPARATOR)):  # each file once
        warning = body_model_mismatch(cfg, prior_description(part, files[part]))
        if warning:
            say(warning)
    records, meta, pictures = evaluate_sources(cfg, entries, names, priors, body_model, out_dir)
    rows = table_rows(records)
    atomic_write_json(out_dir / "results.json", {**meta, "rows": records})
    write_tables(out_dir, rows)
    return rows, pictures


def shape_comparison(paths: list[str], names: list[str], cfg: DictConfig, out_dir: Path,
                     files: dict[str, Prior] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(COLUMNS, rows) of `evaluate_shape_priors`: the shape-prior section of a comparison table."""
    rows, _ = evaluate_shape_priors(paths, names, cfg, out_dir, files)
    return list(COLUMNS), rows


def _log(cfg: DictConfig, run_dir: Path, rows: list[dict[str, Any]], pictures: list[Path]) -> None:
    """Scalars to csv/metrics.csv and W&B (offline unless logged in), figures to W&B."""
    from pytorch_lightning.loggers import WandbLogger

    loggers = build_loggers(cfg, run_dir)
    scalars = {f"shape/{r['name']}/{k}": v for r in rows for k, v in r.items()
               if k not in ("name", "kind") and v is not None}
    for logger in loggers:
        logger.log_metrics(scalars, step=0)
        if isinstance(logger, WandbLogger):
            for p in pictures:
                logger.log_image(key=f"shape/{p.stem}", images=[str(p)], step=0)
    finish_loggers(loggers)


def run_eval_shape(cfg: DictConfig) -> Path:
    entries = prior_entries(cfg)
    files: dict[str, Prior] = {}
    load_shape_entries(entries, files)  # a wrong file fails before anything is written
    run_dir = prepare_run_dir(cfg)
    rows, pictures = evaluate_shape_priors(entries, list(cfg.names), cfg, run_dir, files)
    _log(cfg, run_dir, rows, pictures)
    print_table("Shape priors vs betas ~ N(0, I) (Eq. 5, mm; Eq. 6 ratio)", TABLE_HEADERS, [shape_table_cells(r) for r in rows])
    print(f"results.json, shape.csv, shape.md and figures in {run_dir}")
    return run_dir
