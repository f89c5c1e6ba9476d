"""Config composition and validation: wrong keys and types fail loudly, naming the key and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import CONFIGS_DIR, ConfigError, load_config
from experiments.run import main as run_main

ALL_CONFIGS = sorted(p for p in CONFIGS_DIR.glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.stem)
def test_every_experiment_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task


def test_unknown_key_names_the_key_and_valid_choices() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS_DIR / "gan_s.yaml", ["model.latnet=U"])
    msg = str(err.value)
    assert "model.latnet" in msg and "latent" in msg and "d_steps" in msg


def test_unknown_key_in_yaml_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: %s\ntrainer:\n  max_epoch: 3\n" % (CONFIGS_DIR / "gan_s.yaml"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "bad.yaml" in str(err.value) and "trainer.max_epoch" in str(err.value) and "max_epochs" in str(err.value)


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="model.d_steps"):
        load_config(CONFIGS_DIR / "gan_s.yaml", ["model.d_steps=ten"])


def test_override_must_be_key_value() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(CONFIGS_DIR / "gan_s.yaml", ["model.d_steps"])


def test_bases_compose_and_files_override_bases() -> None:
    s, u = load_config(CONFIGS_DIR / "gan_s.yaml"), load_config(CONFIGS_DIR / "gan_u.yaml")
    assert (s.model.latent, u.model.latent) == ("S", "U")
    assert s.model.d_steps == u.model.d_steps == 10 and s.optim.lr == 2e-4


def test_embedded_default_applies_only_without_data_and_overrides_win(tmp_path: Path) -> None:
    demo = load_config(CONFIGS_DIR / "gan_s.yaml")
    real = load_config(CONFIGS_DIR / "gan_s.yaml", [f"data.amass_dir={tmp_path}"])
    assert demo.trainer.batches_per_epoch < real.trainer.batches_per_epoch == 1000
    assert real.trainer.max_epochs == 300 and real.data.batch_size == 1024
    assert demo.data.prepared_dir != real.data.prepared_dir
    mine = load_config(CONFIGS_DIR / "gan_s.yaml", ["trainer.max_epochs=2"])
    assert mine.trainer.max_epochs == 2


def test_circular_extends_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_cli_reports_config_errors_with_exit_code_2(capsys: pytest.CaptureFixture) -> None:
    assert run_main(["gan_s", "model.nope=1", "--print-config"]) == 2
    assert "model.nope" in capsys.readouterr().err
    assert run_main(["gan_s", "--print-config"]) == 0
