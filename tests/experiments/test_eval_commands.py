"""eval-coverage, eval-interp, eval-generation and compare runners on tiny sizes: files, keys, numbers,
DDP == single process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.amass.datamodule import AmassDataModule
from datamodules.amass.prepare import PrepareReport
from experiments.compare import run_compare
from experiments.config import CONFIGS_DIR, load_config
from experiments.eval_coverage import evaluate_prior_coverage, run_eval_coverage
from experiments.eval_generation import run_eval_generation
from experiments.eval_interp import evaluate_prior_interpolation
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.coverage import distance_stats, evaluate_coverage
from pose_prior.evaluation.generation import generation_metrics
from pose_prior.evaluation.interpolation import evaluate_interpolation
from pose_prior.evaluation.train_statistics import load_train_statistics
from pose_prior.priors import load_prior, save_prior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent

TINY_COVERAGE = ["coverage.num_generated=600", "coverage.num_references=30", "coverage.num_precision=20",
                 "coverage.chunk_size=256", "coverage.tsne_points=40", "coverage.seed=3",
                 "coverage.nearest_levels=[8]"]
TINY_INTERP = ["interpolation.num_pairs=3", "interpolation.steps=5", "interpolation.batch_size=2",
               "interpolation.invert.candidates=16", "interpolation.invert.restarts=2",
               "interpolation.invert.refine_iters=4"]
TINY_GENERATION = ["generation.dposer_x_samples=300", "generation.nrdf_samples=60", "generation.num_references=100",
                   "generation.apd_samples=40", "generation.dnn_samples=30", "generation.chunk=128", "generation.seed=2"]
GENERATION_KEYS = ("fid", "precision", "recall", "density", "coverage", "apd_cm", "dnn")


def common(run_dir: Path, amass: Path, prepared: Path) -> list[str]:
    return [f"output_dir={run_dir}", f"data.amass_dir={amass}", f"data.prepared_dir={prepared}",
            "body_model.path=open-light", "logger.wandb_mode=offline", "trainer.accelerator=cpu"]


@pytest.fixture(scope="module")
def tiny_priors(tmp_path_factory) -> dict[str, Path]:
    """A small random-weight GAN-S prior and a tiny GMM prior (2 components)."""
    from pose_prior.priors import GMMPrior
    from pose_prior.priors.gmm.model import fit_gmm

    root = tmp_path_factory.mktemp("priors")
    torch.manual_seed(0)
    gen = PoseGenerator(latent_dim=32)
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(0.3)
    save_prior(root / "gan_s" / "prior.pt", gen, make_latent("S", 32))
    poses = np.random.default_rng(0).normal(0, 0.2, size=(200, 63))
    GMMPrior(fit_gmm(poses, n_components=2, seed=0, max_iter=5)).save(root / "gmm" / "prior.pt")
    return {"gan_s": root / "gan_s" / "prior.pt", "gmm": root / "gmm" / "prior.pt"}


def splits(prepared: Path) -> AmassDataModule:
    dm = AmassDataModule(prepared)
    dm.setup()
    return dm


def direct_generation(prior_path: Path, prepared: Path) -> dict[str, dict]:
    """The TINY_GENERATION metrics computed directly (no runner, no cache), per convention."""
    body_model = load_body_model("open-light", "smpl")
    train = np.load(splits(prepared).dataset("train").path)
    stats = load_train_statistics(train, num_references=100, seed=2, body_model=body_model, log=lambda _: None)
    prior = load_prior(prior_path)
    return {conv: generation_metrics(prior, body_model, train, num_samples=n, convention=conv, stats=stats, seed=2,
                                     apd_samples=40, dnn_samples=30, chunk=128)
            for conv, n in (("dposer-x", 300), ("nrdf", 60))}


def test_eval_generation_files_equal_direct_metrics(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                    tiny_priors) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    cfg = load_config(CONFIGS_DIR / "eval_generation.yaml",
                      [f"priors=[{tiny_priors['gan_s']},{tiny_priors['gmm']}]",
                       *common(tmp_path / "gen", demo_amass_tree, prepared), *TINY_GENERATION])
    run = run_eval_generation(cfg)
    record = json.loads((run / "generation.json").read_text())
    rows = list(csv.DictReader(open(run / "generation.csv")))
    assert [(r["name"], r["convention"]) for r in rows] == [
        ("gan_s", "dposer-x"), ("gan_s", "nrdf"), ("gmm", "dposer-x"), ("gmm", "nrdf")]
    for name in ("gan_s", "gmm"):
        direct = direct_generation(tiny_priors[name], prepared)
        for r in [r for r in record["results"] if r["name"] == name]:
            expected = direct[r["convention"]]
            assert r["num_samples"] == expected["num_samples"] and r["world_size"] == 1
            for key in GENERATION_KEYS:
                if key in expected:
                    assert r[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12), (name, key)
    assert float(rows[0]["fid"]) == pytest.approx(record["results"][0]["fid"], rel=1e-12)
    assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.slow
@pytest.mark.ddp
def test_eval_generation_ddp_spawn_equals_single_process(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                         tiny_priors) -> None:
    """2 CPU processes (Lightning ddp_spawn, gloo): each draws its share, the metrics of the gathered set are
    the single process's."""
    prepared = Path(prepared_amass.prepared_dir)
    results = {}
    for name, extra in (("single", ["trainer.devices=1"]),
                        ("ddp", ["trainer.devices=2", "trainer.strategy=ddp_spawn"])):
        cfg = load_config(CONFIGS_DIR / "eval_generation.yaml",
                          [f"prior={tiny_priors['gan_s']}", *common(tmp_path / name, demo_amass_tree, prepared),
                           *TINY_GENERATION, "logger.wandb_mode=disabled", *extra])
        results[name] = json.loads((run_eval_generation(cfg) / "generation.json").read_text())["results"]
    for one, two in zip(results["single"], results["ddp"]):
        assert (one["world_size"], two["world_size"]) == (1, 2)
        for key in GENERATION_KEYS:
            if key in one:
                assert two[key] == pytest.approx(one[key], rel=1e-9, abs=1e-12), key


@pytest.mark.slow
def test_eval_coverage_json_equals_direct_evaluation(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                     tiny_priors) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    cfg = load_config(CONFIGS_DIR / "eval_coverage.yaml",
                      [f"prior={tiny_priors['gan_s']}", *common(tmp_path / "cov", demo_amass_tree, prepared), *TINY_COVERAGE])
    run = run_eval_coverage(cfg)
    record = json.loads((run / "coverage.json").read_text())
    assert record["prior"]["kind"] == "gan" and record["prior"]["latent"] == "S"
    assert record["body_model"]["path"] == "open-light"
    assert record["sizes"]["num_generated"] == 600 and record["sizes"]["num_precision"] == 20
    for name in ("coverage_cdf.png", "coverage_tsne.png", "coverage_nearest.npz"):
        assert (run / name).is_file(), name
    nearest = np.load(run / "coverage_nearest.npz")
    dm = splits(prepared)
    direct = evaluate_coverage(load_prior(tiny_priors["gan_s"]), load_body_model("open-light", "smpl"),
                               dm.dataset("train"), dm.dataset("test"), num_generated=600, num_references=30,
                               num_precision=20, chunk_size=256, seed=3, nearest_kwargs={"levels": (8,)})
    for split in ("train", "test"):
        for metric in ("recall", "precision"):
            assert set(record[split][metric]) >= {"mean_mm", "std_mm", "median_mm"}
            stats = distance_stats(nearest[f"{split}_{metric}_mm"])
            ref = getattr(direct, metric)[split].stats()
            for key in ("mean_mm", "std_mm", "median_mm"):
                assert record[split][metric][key] == pytest.approx(stats[key], abs=1e-9)
                assert record[split][metric][key] == pytest.approx(ref[key], abs=1e-6)
        np.testing.assert_array_equal(nearest[f"{split}_recall_index"], direct.recall[split].index.numpy())
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert float(rows[-1]["coverage/train/recall_mean_mm"]) == pytest.approx(record["train"]["recall"]["mean_mm"], rel=1e-6)
    assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_eval_coverage_ddp_spawn_equals_single_process(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                       tiny_priors) -> None:
    """2 CPU processes (Lightning ddp_spawn, gloo): same argmin for every body, distances within 1e-6 mm; the
    result comes back to the main process in memory, equal to the files written for the user."""
    prepared = Path(prepared_amass.prepared_dir)
    results = {}
    for name, extra in (("single", ["trainer.devices=1"]),
                        ("ddp", ["trainer.devices=2", "trainer.strategy=ddp_spawn"])):
        cfg = load_config(CONFIGS_DIR / "eval_coverage.yaml",
                          [f"prior={tiny_priors['gan_s']}", *common(tmp_path / name, demo_amass_tree, prepared),
                           *TINY_COVERAGE, "coverage.tsne_points=0", "logger.wandb_mode=disabled", *extra])
        _, callback = evaluate_prior_coverage(cfg)
        results[name] = np.load(tmp_path / name / "coverage_nearest.npz")
        record = json.loads((tmp_path / name / "coverage.json").read_text())
        assert record["sizes"]["world_size"] == (2 if name == "ddp" else 1)
        assert callback.last_record["train"] == record["train"] and callback.last_record["sizes"] == record["sizes"]
        np.testing.assert_array_equal(callback.last_result.recall["train"].index.numpy(), results[name]["train_recall_index"])
    for key in results["single"].files:
        if key.endswith(("_index", "_row", "_rows")):
            np.testing.assert_array_equal(results["ddp"][key], results["single"][key], err_msg=key)
        else:
            np.testing.assert_allclose(results["ddp"][key], results["single"][key], atol=1e-6, rtol=0, err_msg=key)


def test_eval_interp_json_equals_direct_evaluation(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                   tiny_priors) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    cfg = load_config(CONFIGS_DIR / "eval_interp.yaml",
                      [f"prior={tiny_priors['gmm']}", *common(tmp_path / "interp", demo_amass_tree, prepared),
                       *TINY_INTERP])
    run, callback = evaluate_prior_interpolation(cfg)
    record = json.loads((run / "interpolation.json").read_text())
    assert callback.last_record["ratio_per_pair"] == pytest.approx(record["ratio_per_pair"], rel=1e-12)
    assert callback.last_record["pairs_rows"] == record["pairs_rows"]  # in memory = the file written for the user
    assert record["prior"]["kind"] == "gmm"
    assert record["pairs"] == 3 and record["steps"] == 4 and record["meshes_per_path"] == 5
    assert len(record["mean_curve"]) == 4 and len(record["pairs_rows"]) == 3
    assert (run / "interpolation_curve.png").is_file()
    direct = evaluate_interpolation(load_prior(tiny_priors["gmm"]), load_body_model("open-light", "smpl"),
                                    splits(prepared).dataset("test"), num_pairs=3, steps=5, seed=0)
    s = direct.summary()
    for key in ("ratio_mean", "ratio_std", "ratio_median"):
        assert record[key] == pytest.approx(s[key], rel=1e-9)
    np.testing.assert_allclose(record["mean_curve"], direct.mean_curve().numpy(), rtol=1e-9)
    assert s["ratio_mean"] >= 1.0


def test_compare_two_priors_writes_one_row_each(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                tiny_priors, prior_loads) -> None:
    prepared = Path(prepared_amass.prepared_dir)
    priors = f"priors=[{tiny_priors['gan_s']},{tiny_priors['gmm']}]"
    cfg = load_config(CONFIGS_DIR / "compare.yaml",
                      [priors, *common(tmp_path / "cmp", demo_amass_tree, prepared), *TINY_COVERAGE, *TINY_INTERP,
                       *TINY_GENERATION, "coverage.tsne_points=0"])
    out = run_compare(cfg)
    # each file is read once although coverage, interpolation and generation all evaluate it
    assert prior_loads == {str(tiny_priors["gan_s"]): 1, str(tiny_priors["gmm"]): 1}
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["prior"] for r in rows] == ["gan_s", "gmm"] and [r["kind"] for r in rows] == ["gan", "gmm"]
    for r in rows:
        cov = json.loads((out / r["prior"] / "coverage" / "coverage.json").read_text())
        assert float(r["train_recall_mean_mm"]) == pytest.approx(cov["train"]["recall"]["mean_mm"])
        interp = json.loads((out / r["prior"] / "interpolation" / "interpolation.json").read_text())
        assert float(r["interp_ratio_median"]) == pytest.approx(interp["ratio_median"])
        direct = direct_generation(tiny_priors[r["prior"]], prepared)  # the generation columns: same numbers
        assert int(r["dposer_x_num_samples"]) == 300 and int(r["nrdf_num_samples"]) == 60
        for key in GENERATION_KEYS:
            assert float(r[f"dposer_x_{key}"]) == pytest.approx(direct["dposer-x"][key], rel=1e-12, abs=1e-12), key
        assert float(r["nrdf_fid"]) == pytest.approx(direct["nrdf"]["fid"], rel=1e-12)
        assert (out / r["prior"] / "generation" / "generation.json").is_file()
    md = (out / "comparison.md").read_text().splitlines()
    assert md[0].startswith("| prior") and "FID (DPoser-X)" in md[0] and "APD cm (NRDF)" in md[0]
    assert len(md) == 6 and "gan_s" in md[2] and "gmm" in md[3] and md[4] == "" and md[5].startswith("Sizes: ")
    assert "DPoser-X: 300 samples" in md[5]
    assert (out / "comparison_cdf.png").is_file() and (out / "comparison_interpolation.png").is_file()


def test_compare_tables_shape_priors_in_their_own_section(tmp_path, demo_amass_tree, prepared_amass: PrepareReport,
                                                          tiny_priors) -> None:
    """A GAN-beta file and a POSE.pt+SHAPE.pt pair go to the shape section: eval-shape's numbers (with its
    N(0, I) row), beside the body-pose priors' table, in one comparison.md and comparison.csv."""
    from experiments.eval_shape import shape_comparison
    from pose_prior.priors.shape.networks import ShapeGenerator
    from pose_prior.priors.shape.prior import GanBetaPrior

    torch.manual_seed(0)
    shape = tmp_path / "gan_beta" / "prior.pt"
    GanBetaPrior(ShapeGenerator(latent_dim=16, hidden=64), make_latent("S", 16)).save(shape)
    pair = f"{tiny_priors['gan_s']}+{shape}"
    tiny_shape = ["shape.num_generated=40", "shape.num_references=15", "shape.num_posed_references=12",
                  "shape.chunk_size=16", "shape.interp_pairs=3", "shape.interp_steps=4", "shape.tsne_points=0",
                  "shape.render_samples=0", "shape.render_pairs=0"]
    cfg = load_config(CONFIGS_DIR / "compare.yaml", [
        f"priors=[{tiny_priors['gan_s']},{shape},'{pair}']", "names=[gan_s,gan_beta,pair]",
        *common(tmp_path / "cmp", demo_amass_tree, prepared_amass.prepared_dir), *TINY_COVERAGE, *TINY_INTERP,
        *TINY_GENERATION, "coverage.tsne_points=0", *tiny_shape])
    out = run_compare(cfg)
    md = (out / "comparison.md").read_text()
    assert md.index("## Body-pose priors") < md.index("## Shape priors")
    # each table followed by the sizes behind it: the body-pose ones, then the shape section's
    assert md.index("## Body-pose priors") < md.index("Sizes: Table 1: 600 generated bodies") < md.index(
        "## Shape priors") < md.index("Sizes: Shape table: 40 bodies per row against 15 test shapes")
    rows = {r["prior"]: r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert list(rows) == ["gan_s", "normal", "gan_beta", "pair"]
    _, direct = shape_comparison([str(shape), pair], ["gan_beta", "pair"], cfg, tmp_path / "direct")
    for d in direct:
        for key in ("recall_mm", "precision_mm", "interp_ratio"):
            assert float(rows[d["name"]][f"shape_{key}"]) == pytest.approx(d[key], rel=1e-9), (d["name"], key)
    assert rows["pair"]["shape_posed_recall_mm"] and not rows["gan_beta"]["shape_posed_recall_mm"]
    assert rows["gan_s"]["train_recall_mean_mm"] and not rows["gan_beta"]["train_recall_mean_mm"]


@pytest.mark.slow
def test_compare_without_priors_trains_every_kind_and_tables_them(tmp_path, demo_amass_tree,
                                                                  prepared_amass: PrepareReport) -> None:
    """`make compare` with no arguments: small GAN-S/U/N, VPoser and GMM trained through their own runners."""
    prepared = Path(prepared_amass.prepared_dir)
    gan = "[trainer.max_epochs=1,trainer.batches_per_epoch=2,model.d_steps=1,data.batch_size=16,samples.num_bodies=1]"
    cfg = load_config(CONFIGS_DIR / "compare.yaml", [
        *common(tmp_path / "cmp", demo_amass_tree, prepared), *TINY_COVERAGE, *TINY_INTERP,
        "coverage.tsne_points=0", f"train.run_dir={tmp_path / 'priors'}",
        f"train.overrides.gan_s={gan}", f"train.overrides.gan_u={gan}", f"train.overrides.gan_n={gan}",
        "train.overrides.vposer=[trainer.max_epochs=1,trainer.val_batches=1,data.batch_size=32]",
        "train.overrides.gmm=[gmm.n_components=2,gmm.max_iter=5]", *TINY_GENERATION,
    ])
    out = run_compare(cfg)
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["prior"] for r in rows] == ["gan_s", "gan_u", "gan_n", "vposer", "gmm"]
    assert [r["kind"] for r in rows] == ["gan", "gan", "gan", "vposer", "gmm"]
    for r in rows:
        assert (tmp_path / "priors" / r["prior"] / "prior.pt").is_file()
        assert np.isfinite(float(r["train_recall_mean_mm"])) and float(r["train_recall_mean_mm"]) > 0
    assert len((out / "comparison.md").read_text().splitlines()) == 2 + 5 + 2  # header, 5 priors, sizes


def test_eval_ik_tables_none_and_a_pooled_prior_as_a_direct_fit_finds(tmp_path, demo_amass_tree,
                                                                      prepared_amass: PrepareReport,
                                                                      tiny_priors) -> None:
    """eval-ik with "none" and a GAN-S file under start_pool: the pool applies to the prior and not to
    "none" (which has nothing to sample), and each row's numbers are those of fit_joints3d on the same poses."""
    from experiments.eval_generation import split_array
    from experiments.eval_ik import run_eval_ik
    from pose_prior.fitting.joints3d_fit import Joints3DFitSettings, fit_joints3d, ik_metrics, task_mask
    from pose_prior.rows import sample_rows

    prepared = Path(prepared_amass.prepared_dir)
    cfg = load_config(CONFIGS_DIR / "eval_ik.yaml", [
        f"priors=[none,{tiny_priors['gan_s']}]", *common(tmp_path / "ik", demo_amass_tree, prepared)[:5],
        "ik.num_poses=6", "ik.batch_size=4", "ik.tasks=[full,leaves]", "fitting.iters=8", "fitting.start_pool=4"])
    out = run_eval_ik(cfg)
    records = {(r["name"], r["task"]): r for r in json.loads((out / "ik.json").read_text())["results"]}
    assert set(records) == {(n, t) for n in ("none", "gan_s") for t in ("full", "leaves")}
    test = split_array(cfg, "test")[1]
    poses = torch.from_numpy(test[sample_rows(test.shape[0], 6, 0)]).float()
    body = load_body_model("open-light")
    with torch.no_grad():
        joints = body(poses).joints[:, :22]
    settings = Joints3DFitSettings(iters=8, start_pool=4)
    for name, prior in (("none", None), ("gan_s", load_prior(tiny_priors["gan_s"]))):
        for task in ("full", "leaves"):
            fits = [fit_joints3d(prior, body, joints[sl], task_mask(task), settings) for sl in (slice(0, 4), slice(4, 6))]
            per = [ik_metrics(f, joints[sl], poses[sl], task_mask(task)) for f, sl in zip(fits, (slice(0, 4), slice(4, 6)))]
            mpjpe = float(torch.cat([p["mpjpe_mm"] for p in per]).mean())
            assert records[(name, task)]["mpjpe_mm"] == pytest.approx(mpjpe, rel=1e-5), (name, task)
