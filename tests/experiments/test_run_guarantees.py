"""What a training run promises: a checkpoint every epoch, resume from the newest loadable one, a run
folder that is never silently reused, a diverged run that stops with a diagnosis, config errors that are
one line and exit code 2, and a prior that records where its training stopped."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from experiments.evaluation import body_model_mismatch, prior_description
from experiments.run import EXIT_DIVERGED, EXIT_USER_ERROR
from experiments.run import main as run_main
from experiments.training import newest_checkpoint, read_checkpoint_info
from pose_prior.priors import load_prior
from tests.experiments.wandb_offline import history
from tests.fixtures.gan import tiny_gan_overrides

EPOCHS = 2


def gan_args(run_dir: Path, amass: Path, prepared, *extra: str) -> list[str]:
    return ["gan_s", *tiny_gan_overrides(run_dir, amass, Path(prepared.prepared_dir), *extra)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, demo_amass_tree: Path, prepared_amass) -> Path:
    """2 epochs, a kept checkpoint only every 5 epochs, W&B offline."""
    run_dir = tmp_path_factory.mktemp("guarantees") / "run"
    assert run_main(gan_args(run_dir, demo_amass_tree, prepared_amass, f"trainer.max_epochs={EPOCHS}",
                             "trainer.checkpoint_every_n_epochs=5")) == 0
    return run_dir


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


# --- checkpoints ------------------------------------------------------------------------------------


def test_last_checkpoint_is_written_every_epoch_whatever_the_period(trained_run: Path) -> None:
    folder = trained_run / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt"]  # period 5 > 2 epochs
    assert read_checkpoint_info(folder / "last.ckpt").epoch == EPOCHS - 1


def test_resume_picks_the_newest_checkpoint_that_loads(tmp_path: Path) -> None:
    for name, epoch in (("epoch0000.ckpt", 0), ("epoch0001.ckpt", 1), ("last.ckpt", 2)):
        torch.save({"epoch": epoch, "global_step": 10 * (epoch + 1), "hyper_parameters": {}}, tmp_path / name)
    assert newest_checkpoint(tmp_path).path.name == "last.ckpt"
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])  # a write cut short
    report: list[str] = []
    assert newest_checkpoint(tmp_path, report).path.name == "epoch0001.ckpt"
    assert report and "last.ckpt" in report[0]


def test_the_prior_records_where_training_stopped(trained_run: Path) -> None:
    prior = load_prior(trained_run / "prior.pt")
    last = read_checkpoint_info(trained_run / "checkpoints" / "last.ckpt")
    prov = prior.provenance
    assert (prov["epoch"], prov["epochs_completed"], prov["global_step"]) == (EPOCHS - 1, EPOCHS, last.global_step)
    description = prior_description(str(trained_run / "prior.pt"), prior)
    assert description["trained_epochs"] == EPOCHS and description["trained_global_step"] == last.global_step
    assert description["trained_with_body_model"]["path"] == "open-light"


def test_evaluating_with_another_body_model_warns(trained_run: Path) -> None:
    description = prior_description(str(trained_run / "prior.pt"), load_prior(trained_run / "prior.pt"))
    other = OmegaConf.create({"body_model": {"path": "open", "model_type": "smpl"}})
    same = OmegaConf.create({"body_model": {"path": "open-light", "model_type": "smpl"}})
    assert "open-light" in body_model_mismatch(other, description)
    assert body_model_mismatch(same, description) is None


# --- run folders ------------------------------------------------------------------------------------


def test_a_used_run_folder_is_refused_before_anything_is_written(
        trained_run: Path, demo_amass_tree: Path, prepared_amass, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(trained_run)
    assert run_main(gan_args(trained_run, demo_amass_tree, prepared_amass)) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "resume=true" in err and "overwrite=true" in err and "Traceback" not in err
    assert snapshot(trained_run) == before


def test_resume_refuses_another_latent(trained_run: Path, demo_amass_tree: Path, prepared_amass,
                                       capsys: pytest.CaptureFixture) -> None:
    before = snapshot(trained_run)
    args = gan_args(trained_run, demo_amass_tree, prepared_amass, "resume=true", "model.latent=U")
    assert run_main(args) == EXIT_USER_ERROR
    assert "model.latent" in capsys.readouterr().err
    assert snapshot(trained_run) == before


def test_overwrite_starts_a_clean_run(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: train-gan\n")
    (run_dir / "wandb_run_id.txt").write_text("oldrunid")
    (run_dir / "stale.txt").write_text("from an earlier run")
    args = gan_args(run_dir, demo_amass_tree, prepared_amass, "trainer.max_epochs=1", "trainer.batches_per_epoch=1",
                    "overwrite=true")
    assert run_main(args) == 0
    assert not (run_dir / "stale.txt").exists() and (run_dir / "wandb_run_id.txt").read_text() != "oldrunid"
    assert read_checkpoint_info(run_dir / "checkpoints" / "last.ckpt").epoch == 0


def test_overwrite_leaves_a_folder_that_is_not_a_run_alone(tmp_path: Path, demo_amass_tree: Path, prepared_amass,
                                                           capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert run_main(gan_args(tmp_path, demo_amass_tree, prepared_amass, "overwrite=true")) == EXIT_USER_ERROR
    assert "not a run folder" in capsys.readouterr().err and (tmp_path / "notes.txt").exists()


# --- divergence -------------------------------------------------------------------------------------


def test_a_diverging_run_stops_naming_the_loss(tmp_path: Path, demo_amass_tree: Path, prepared_amass,
                                               capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    args = gan_args(run_dir, demo_amass_tree, prepared_amass, "optim.lr=1e6", "trainer.max_epochs=3",
                    "logger.wandb_mode=disabled")
    assert run_main(args) == EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "training diverged: non-finite train/" in err and "loss" in err and "Traceback" not in err
    prior = run_dir / "prior.pt"
    if prior.exists():  # only ever one from before the divergence
        assert all(torch.isfinite(v).all() for v in load_prior(prior).state_dict().values())


# --- config values and user errors ------------------------------------------------------------------

BAD_VALUES = ["model.latent=X", "model.latent_dim=0", "data.batch_size=0", "trainer.max_epochs=-1", "optim.lr=0",
              "optim.lr=-1e-3", "model.d_steps=0", "body_model.model_type=smplx", "body_model.gender=other",
              "logger.wandb_mode=sometimes", "data.frame_selection=every", "model.procedure=mine",
              "trainer.checkpoint_every_n_epochs=0", "model.gen_dropout=1.5", "body_model.path=/no/such/model.pkl"]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_values_are_rejected_when_the_config_is_read(bad: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert run_main(["gan_s", f"output_dir={tmp_path / 'run'}", bad]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert bad.split("=")[0] in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", ["model_type=smplx", "dtype=float16", "data.keypoint_key=hands"])
def test_choices_of_other_tasks_are_checked_too(bad: str, capsys: pytest.CaptureFixture) -> None:
    key = bad if not bad.startswith("model_type") else "body_model." + bad
    assert run_main(["eval_h36m", key, "--print-config"]) == EXIT_USER_ERROR
    assert key.split("=")[0] in capsys.readouterr().err


def test_user_errors_exit_2_without_traceback(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              demo_amass_tree: Path, prepared_amass) -> None:
    common = [f"data.amass_dir={demo_amass_tree}", f"data.prepared_dir={prepared_amass.prepared_dir}",
              "logger.wandb_mode=disabled", "body_model.path=open-light"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = {
        "missing prior": ["eval_coverage", f"prior={tmp_path / 'nope.pt'}", f"output_dir={tmp_path / 'e1'}"],
        "a run folder as prior": ["eval_coverage", f"prior={trained_run}", f"output_dir={tmp_path / 'e2'}"],
        "a checkpoint as prior": ["eval_interp", f"prior={trained_run / 'checkpoints' / 'last.ckpt'}",
                                  f"output_dir={tmp_path / 'e3'}"],
        "no prior": ["eval_coverage", f"output_dir={tmp_path / 'e4'}"],
        "unwritable output_dir": ["eval_coverage", f"prior={trained_run / 'prior.pt'}",
                                  f"output_dir={blocker / 'out'}"],
    }
    for what, args in cases.items():
        assert run_main([*args, *common]) == EXIT_USER_ERROR, what
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err, (what, err)
    assert not any((tmp_path / f"e{i}").exists() for i in range(1, 5))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert run_main(["eval_coverage", f"prior={trained_run / 'prior.pt'}", f"output_dir={ro / 'x'}",
                         *common]) == EXIT_USER_ERROR


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSE_PRIOR_DEBUG", "1")
    assert run_main(["eval_coverage", f"prior={tmp_path / 'nope.pt'}", "logger.wandb_mode=disabled"]) == 2
    assert "Traceback" in capsys.readouterr().err


# --- W&B --------------------------------------------------------------------------------------------


def _steps(rows: list[dict], prefix: str) -> set[int]:
    return {r["trainer/global_step"] for r in rows if any(k.startswith(prefix) for k in r)}


def test_validation_pictures_share_the_scalars_steps(trained_run: Path) -> None:
    (run,) = list((trained_run / "wandb").glob("offline-run-*"))
    rows = history(run)
    val = _steps(rows, "val/")
    assert len(val) == EPOCHS and _steps(rows, "discriminator_histogram") == val


def test_epoch_end_pictures_share_the_scalars_steps(trained_run: Path) -> None:
    (run,) = list((trained_run / "wandb").glob("offline-run-*"))
    rows = history(run)
    assert _steps(rows, "samples") == _steps(rows, "train/d_loss_epoch")


def test_the_prior_is_a_wandb_artifact(trained_run: Path) -> None:
    from tests.experiments.wandb_offline import records

    (run,) = list((trained_run / "wandb").glob("offline-run-*"))
    kinds = [r.artifact for r in records(next(run.glob("run-*.wandb"))) if r.WhichOneof("record_type") == "artifact"]
    assert any(a.type == "prior" for a in kinds)


def test_comparison_table_columns_are_numeric_and_unique() -> None:
    from experiments.compare import comparison_numbers

    stats = {"mean_mm": 1.0, "std_mm": 2.0, "median_mm": 3.0}
    cov = {"a": {"prior": {"kind": "gan", "trained_epochs": 8, "trained_global_step": 52800}, "train": {"recall": stats, "precision": stats},
                 "test": {"recall": stats, "precision": stats}}}
    interp = {"a": {"ratio_mean": 1.1, "ratio_std": 0.1, "ratio_median": 1.0, "pairs": 3, "steps": 11}}
    (record,) = comparison_numbers(cov, interp, ["a/prior.pt"])
    numeric = {k: v for k, v in record.items() if k not in ("prior", "path", "kind")}
    assert len(record) == len(set(record)) and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                   for v in numeric.values())


def test_vposer_writes_last_checkpoint_every_epoch_too(tmp_path: Path, demo_amass_tree: Path, prepared_amass) -> None:
    run_dir = tmp_path / "vposer"
    args = ["vposer", f"output_dir={run_dir}", f"data.amass_dir={demo_amass_tree}",
            f"data.prepared_dir={prepared_amass.prepared_dir}", "logger.wandb_mode=disabled", "data.batch_size=32",
            "data.eval_batch_size=32", "trainer.batches_per_epoch=2", "trainer.val_batches=1",
            "trainer.progress_bar=false", "body_model.path=open-light", "model.num_neurons=32",
            "trainer.max_epochs=2", "trainer.checkpoint_every_n_epochs=5"]
    assert run_main(args) == 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == ["last.ckpt"]
    assert read_checkpoint_info(run_dir / "checkpoints" / "last.ckpt").epoch == 1
    assert load_prior(run_dir / "prior.pt").provenance["epochs_completed"] >= 1


def test_divergence_keeps_the_last_good_checkpoint_and_prior(tmp_path: Path, demo_amass_tree: Path, prepared_amass,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """Weights turned NaN in the 2nd epoch: the run stops there; epoch 1's checkpoint and prior stay intact."""
    from lightning_modules.adversarial_prior import AdversarialPriorModule

    step = AdversarialPriorModule.training_step

    def poisoned(self, batch, batch_idx):
        step(self, batch, batch_idx)
        if self.current_epoch == 1 and batch_idx == 1:
            with torch.no_grad():
                next(self.generator.parameters()).fill_(float("nan"))

    monkeypatch.setattr(AdversarialPriorModule, "training_step", poisoned)
    run_dir = tmp_path / "run"
    args = gan_args(run_dir, demo_amass_tree, prepared_amass, "trainer.max_epochs=3", "logger.wandb_mode=disabled")
    assert run_main(args) == EXIT_DIVERGED
    err = capsys.readouterr().err
    assert "non-finite weight generator." in err and "epoch 2, batch 1" in err and "last.ckpt" in err
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert load_prior(run_dir / "prior.pt").provenance["epochs_completed"] == 1
