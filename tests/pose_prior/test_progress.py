"""Progress lines: done/total, rate and ETA with a fake clock; silent when disabled, off rank 0 or via env."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pose_prior import progress as progress_mod
from pose_prior.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch):
    monkeypatch.delenv(progress_mod.ENV_VAR, raising=False)


def _bar(clock: FakeClock, stream: io.StringIO, **kwargs) -> Progress:
    return Progress("scanning", 100, unit="files", every=10.0, clock=clock, stream=stream, **kwargs)


def test_prints_done_total_rate_eta_at_most_every_n_seconds():
    clock, out = FakeClock(), io.StringIO()
    with _bar(clock, out) as bar:
        clock.now += 5.0
        bar.update(10)  # 5 s in: quieter than every 10 s
        assert out.getvalue() == ""
        clock.now += 5.0
        bar.update(10)  # 20 done in 10 s: 2 files/s, 80 left -> 40 s
        assert out.getvalue() == "scanning: 20/100 (20.0%), 2.0 files/s, ETA 00:40\n"
        clock.now += 3.0
        bar.update(5)  # within 10 s of the last line
        assert out.getvalue().count("\n") == 1
        clock.now += 7.0
        bar.update(15)  # 40 done in 20 s
        assert out.getvalue().splitlines()[-1] == "scanning: 40/100 (40.0%), 2.0 files/s, ETA 00:30"
        clock.now += 25.0
        bar.update(60)
    lines = out.getvalue().splitlines()
    assert lines[-2] == "scanning: 100/100 (100.0%), 2.2 files/s, ETA 00:00"
    assert lines[-1] == "scanning: 100/100 (100.0%), 2.2 files/s, ETA 00:00 (took 00:45)"


def test_quick_work_prints_nothing_at_all():
    clock, out = FakeClock(), io.StringIO()
    with _bar(clock, out) as bar:
        for _ in range(100):
            clock.now += 0.01
            bar.update()
    assert out.getvalue() == "" and bar.done == 100


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"rank": 1}, {"rank": 3}])
def test_silent_when_disabled_or_not_rank_zero(kwargs):
    clock, out = FakeClock(), io.StringIO()
    with _bar(clock, out, **kwargs) as bar:
        clock.now += 60.0
        bar.update(50)
    assert out.getvalue() == "" and bar.done == 50


def test_rank_zero_prints_and_env_var_silences(monkeypatch):
    clock, out = FakeClock(), io.StringIO()
    bar = _bar(clock, out, rank=0)
    clock.now += 60.0
    bar.update(50)
    assert "50/100" in out.getvalue()
    monkeypatch.setenv(progress_mod.ENV_VAR, "0")
    out2 = io.StringIO()
    quiet = _bar(clock, out2, rank=0)
    clock.now += 60.0
    quiet.update(50)
    assert out2.getvalue() == ""


def test_prints_to_stderr_by_default(capsys):
    clock = FakeClock()
    bar = Progress("work", 4, every=1.0, clock=clock)
    clock.now += 2.0
    bar.update(1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "work: 1/4 (25.0%), 0.5/s, ETA 00:06\n"


def test_duration_format():
    assert format_duration(0) == "00:00"
    assert format_duration(61.4) == "01:01"
    assert format_duration(3599) == "59:59"
    assert format_duration(3 * 3600 + 62) == "3:01:02"
    assert format_duration(float("inf")) == "--:--" and format_duration(float("nan")) == "--:--"


def test_amass_preparation_reports_files(demo_amass_tree, tmp_path, monkeypatch, capsys):
    from datamodules.amass import prepare as prep
    from experiments.schemas.data import DEFAULT_ALIASES, DEFAULT_SPLITS

    monkeypatch.setattr(prep, "Progress", lambda *a, **k: Progress(*a, **{**k, "every": 0.0}))
    prep.prepare_amass(demo_amass_tree, tmp_path / "p", DEFAULT_SPLITS, DEFAULT_ALIASES, progress=True)
    err = capsys.readouterr().err
    assert "AMASS preparation, scanning: 20/20 (100.0%)" in err and "AMASS preparation, writing: 20/20" in err
    assert "files/s, ETA" in err
    prep.prepare_amass(demo_amass_tree, tmp_path / "q", DEFAULT_SPLITS, DEFAULT_ALIASES)  # progress=False
    assert capsys.readouterr().err == ""


def test_coverage_reports_generated_and_database_bodies(light_body_model, monkeypatch, capsys):
    import torch

    from pose_prior.evaluation import coverage
    from tests.pose_prior.test_coverage import small_prior

    monkeypatch.setattr(coverage, "Progress", lambda *a, **k: Progress(*a, **{**k, "every": 0.0}))
    train = (torch.randn(30, 63, generator=torch.Generator().manual_seed(0)) * 0.2).numpy().astype(np.float32)
    coverage.evaluate_coverage(small_prior(), light_body_model, train, None, num_generated=50, num_references=5,
                               num_precision=5, chunk_size=20)
    err = capsys.readouterr().err
    assert "coverage recall: 50/50 (100.0%)" in err and "coverage precision: 30/30 (100.0%)" in err
    coverage.evaluate_coverage(small_prior(), light_body_model, train, None, num_generated=50, num_references=5,
                               num_precision=5, chunk_size=20, progress=False)
    assert capsys.readouterr().err == ""
