"""eval-shape (paper supplement D) through the CLI on the embedded default at tiny sizes: files, strict JSON,
and the N(0, I) row, a GAN-beta row and its interpolation checked against independent float64 loops."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.shapes.readers import OPEN_SHAPES
from datamodules.shapes.splits import split_rows
from experiments.eval_shape import COLUMNS, shape_comparison
from experiments.run import EXIT_USER_ERROR
from experiments.run import main as run_main
from pose_prior.body_model import load_body_model
from pose_prior.priors import load_prior, save_prior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape.networks import PoseShapeGenerator, ShapeGenerator
from pose_prior.priors.shape.prior import GanBetaPrior, GanThetaBetaPrior

TINY = ["shape.num_generated=40", "shape.num_references=15", "shape.num_posed_references=12", "shape.chunk_size=16",
        "shape.interp_pairs=3", "shape.interp_steps=4", "shape.seed=0"]
NO_FIGURES = ["shape.tsne_points=0", "shape.render_samples=0", "shape.render_pairs=0", "logger.wandb_mode=disabled"]
FIGURES = ["shape.tsne_points=30", "shape.render_samples=2", "shape.render_pairs=1", "logger.wandb_mode=offline"]


def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def shape_prior_files(tmp_path_factory) -> dict[str, Path]:
    """Random-weight GAN-beta, GAN-theta-beta and GAN-S files (small widths)."""
    root = tmp_path_factory.mktemp("shape_priors")
    torch.manual_seed(0)
    GanBetaPrior(ShapeGenerator(latent_dim=16, hidden=64), make_latent("S", 16)).save(root / "beta" / "prior.pt")
    GanThetaBetaPrior(PoseShapeGenerator(latent_dim=16, hidden=64), make_latent("S", 16)).save(root / "tb" / "prior.pt")
    gen = PoseGenerator(latent_dim=32, hidden=64)
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(0.3)
    save_prior(root / "pose" / "prior.pt", gen, make_latent("S", 32))
    return {"beta": root / "beta" / "prior.pt", "tb": root / "tb" / "prior.pt", "pose": root / "pose" / "prior.pt"}


def _data(demo_amass_tree: Path, prepared_amass) -> list[str]:
    # no data.amass_dir: the embedded default (open-light model, open shape set, synthetic poses)
    return [f"data.demo_dir={demo_amass_tree}", f"data.prepared_dir={prepared_amass.prepared_dir}"]


def _vertices64(body_model, betas: torch.Tensor) -> torch.Tensor:
    return body_model(torch.zeros(len(betas), 63, dtype=torch.float64), betas=betas.double()).vertices


def _coverage_loop(gen: torch.Tensor, ref: torch.Tensor, body_model) -> tuple[float, float]:
    """Mean recall and mean precision (mm) by an explicit float64 loop over every pair (Eq. 5)."""
    vg, vr = _vertices64(body_model, gen), _vertices64(body_model, ref)
    d = torch.empty(len(vr), len(vg), dtype=torch.float64)
    for i in range(len(vr)):
        for j in range(len(vg)):
            d[i, j] = (vr[i] - vg[j]).norm(dim=-1).mean()
    return float(d.min(1).values.mean() * 1000), float(d.min(0).values.mean() * 1000)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Closed-form SLERP between unit vectors a, b (float64)."""
    omega = torch.arccos((a * b).sum().clamp(-1, 1))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def _run(out: Path, files: dict[str, Path], data: list[str], extra: list[str]) -> None:
    priors = f"priors=[{files['beta']},{files['tb']},{files['pose']}+{files['beta']}]"
    assert run_main(["eval_shape", priors, f"output_dir={out}", *data, *TINY, *extra]) == 0


def test_eval_shape_cli_matches_float64_loops(tmp_path, shape_prior_files, demo_amass_tree, prepared_amass) -> None:
    """Numbers and tables (figures and W&B: the slow test below, they take most of the time)."""
    f = shape_prior_files
    out = tmp_path / "eval"
    _run(out, f, _data(demo_amass_tree, prepared_amass), NO_FIGURES)

    results = _strict((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["normal", "beta", "tb", "pose+beta"]
    assert [rows[n]["kind"] for n in rows] == ["normal", "gan_beta", "gan_theta_beta", "pose+gan_beta"]
    body64 = load_body_model("open-light", dtype=torch.float64)

    # the reference shapes: rows of the open shape set's seeded test split
    betas = torch.from_numpy(np.load(OPEN_SHAPES)["betas"][:, :10].astype(np.float32))
    test_rows = split_rows(len(betas), seed=0)["test"]
    refs = betas[torch.from_numpy(test_rows[np.asarray(results["reference_rows"])])]
    assert results["num_references"] == len(refs) == 15

    # N(0, I): betas drawn by torch.randn from a generator seeded with shape.seed
    normal = torch.randn(40, 10, generator=torch.Generator().manual_seed(0))
    recall, precision = _coverage_loop(normal, refs, body64)
    assert rows["normal"]["zero_pose"]["recall"]["mean_mm"] == pytest.approx(recall, rel=1e-5)
    assert rows["normal"]["zero_pose"]["precision"]["mean_mm"] == pytest.approx(precision, rel=1e-5)

    # GAN-beta: its own latents (sphere samples seeded with shape.seed), decoded
    beta_prior = load_prior(f["beta"])
    with torch.no_grad():
        generated = beta_prior.decode(beta_prior.sample(40, generator=torch.Generator().manual_seed(0)))
    recall, precision = _coverage_loop(generated, refs, body64)
    assert rows["beta"]["zero_pose"]["recall"]["mean_mm"] == pytest.approx(recall, rel=1e-5)
    assert rows["beta"]["zero_pose"]["precision"]["mean_mm"] == pytest.approx(precision, rel=1e-5)

    # interpolation: N(0, I) straight lines are even steps (bodies are affine in betas in the zero pose)
    assert rows["normal"]["interpolation"]["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    # GAN-beta: closed-form SLERP between seeded latent pairs, decoded, Eq. 6 by a loop
    g = torch.Generator().manual_seed(0)
    z0, z1 = beta_prior.sample(3, generator=g).double(), beta_prior.sample(3, generator=g).double()
    ratios = []
    for p in range(3):
        path = torch.stack([_slerp(z0[p], z1[p], t) for t in np.linspace(0, 1, 4)]).float()
        with torch.no_grad():
            v = _vertices64(body64, beta_prior.decode(path))
        steps = [float((v[i] - v[i + 1]).norm(dim=-1).mean()) for i in range(3)]
        ratios.append(max(steps) / min(steps))
    assert rows["beta"]["interpolation"]["ratio_mean"] == pytest.approx(float(np.mean(ratios)), rel=1e-4)

    # posed: the pose-yielding rows, and N(0, I) with the pair's poses; not GAN-beta alone
    assert rows["beta"]["posed"] is None
    assert rows["tb"]["posed"]["poses_from"] == "tb" and rows["pose+beta"]["posed"]["poses_from"] == "pose+beta"
    assert rows["normal"]["posed"]["poses_from"] == "pose+beta"  # a pair's poses, its shape swapped for N(0, I)
    assert results["normal_posed_with_poses_of"] == "pose+beta" and results["num_posed_references"] == 12
    for name in ("tb", "pose+beta", "normal"):
        assert all(math.isfinite(rows[name]["posed"][k]["mean_mm"]) for k in ("recall", "precision"))

    with open(out / "shape.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["name"] for r in table] == list(rows) and list(table[0]) == COLUMNS
    assert float(table[0]["recall_mm"]) == pytest.approx(rows["normal"]["zero_pose"]["recall"]["mean_mm"])
    assert "| normal" in (out / "shape.md").read_text()
    assert (out / "shape_cdf.png").stat().st_size > 1000 and not list(out.glob("tsne_*.png"))
    assert (out / "csv" / "metrics.csv").is_file()


@pytest.mark.slow
def test_eval_shape_cli_writes_figures_and_an_offline_wandb_run(tmp_path, shape_prior_files, demo_amass_tree,
                                                                 prepared_amass) -> None:
    out = tmp_path / "eval"
    _run(out, shape_prior_files, _data(demo_amass_tree, prepared_amass), FIGURES)
    names = [r["name"] for r in _strict((out / "results.json").read_text())["rows"]]
    for name in names:
        safe = name.replace("+", "_")
        for png in (f"tsne_{safe}", f"samples_{safe}", f"interp_{safe}"):
            assert (out / f"{png}.png").stat().st_size > 1000, png
    assert list((out / "wandb").glob("offline-run-*"))


def test_shape_comparison_returns_the_columns_and_rows(tmp_path, shape_prior_files, demo_amass_tree,
                                                       prepared_amass) -> None:
    from experiments.config import CONFIGS_DIR, load_config

    cfg = load_config(CONFIGS_DIR / "eval_shape.yaml", [*_data(demo_amass_tree, prepared_amass), *TINY,
                                                       *NO_FIGURES, "shape.posed=false"])
    columns, rows = shape_comparison([str(shape_prior_files["beta"])], ["GAN-beta"], cfg, tmp_path / "cmp")
    assert columns == COLUMNS and [r["name"] for r in rows] == ["normal", "GAN-beta"]
    assert all(set(r) == set(COLUMNS) for r in rows)
    assert rows[1]["posed_recall_mm"] is None and rows[1]["recall_mm"] > 0
    saved = _strict((tmp_path / "cmp" / "results.json").read_text())
    assert saved["rows"][1]["zero_pose"]["recall"]["mean_mm"] == rows[1]["recall_mm"]


def test_eval_shape_refuses_what_is_not_a_shape_prior(tmp_path, shape_prior_files) -> None:
    f = shape_prior_files
    for prior, what in ((f["pose"], "not a shape prior"), (f"{f['pose']}+{tmp_path / 'none.pt'}", "missing file"),
                        (f"{f['beta']}+{f['beta']}", "a pair of two shape priors")):
        assert run_main(["eval_shape", f"prior={prior}", f"output_dir={tmp_path / 'out'}"]) == EXIT_USER_ERROR, what
    assert not (tmp_path / "out").exists()


LOAD_ONCE = ["shape.num_generated=8", "shape.num_references=5", "shape.chunk_size=8", "shape.posed=false",
             "shape.interp_pairs=2", "shape.interp_steps=3", *NO_FIGURES]


def test_each_prior_file_is_loaded_once_per_run(tmp_path, prior_loads, shape_prior_files, demo_amass_tree,
                                                prepared_amass) -> None:
    """eval-shape, `shape_comparison` and compare's shape section load a file once, also when it stands
    alone and in a pair."""
    from experiments.compare import run_compare
    from experiments.config import CONFIGS_DIR, load_config

    f = {k: str(v) for k, v in shape_prior_files.items()}
    entries = [f["beta"], f["tb"], f"{f['pose']}+{f['beta']}"]
    data = _data(demo_amass_tree, prepared_amass)
    counts = prior_loads
    assert run_main(["eval_shape", f"priors=[{','.join(entries)}]", f"output_dir={tmp_path / 'eval'}", *data,
                     *LOAD_ONCE]) == 0
    assert counts == {f["beta"]: 1, f["tb"]: 1, f["pose"]: 1}

    counts.clear()
    cfg = load_config(CONFIGS_DIR / "eval_shape.yaml", [*data, *LOAD_ONCE])
    shape_comparison(entries, [], cfg, tmp_path / "cmp")
    assert counts == {f["beta"]: 1, f["tb"]: 1, f["pose"]: 1}

    counts.clear()
    cfg = load_config(CONFIGS_DIR / "compare.yaml", [f"priors=[{f['beta']},'{f['pose']}+{f['beta']}']",
                                                     f"output_dir={tmp_path / 'compare'}", *data, *LOAD_ONCE])
    out = run_compare(cfg)
    assert counts == {f["beta"]: 1, f["pose"]: 1}
    # the shape table's caption gives the shape section's sizes, not the body-pose tables'
    md = (out / "comparison.md").read_text().splitlines()
    assert md[-1] == ("Sizes: Shape table: 8 bodies per row against 5 test shapes; Eq. 6: 2 random latent paths, "
                      "3 bodies per path.")
    assert not any("Table 1" in line for line in md)
