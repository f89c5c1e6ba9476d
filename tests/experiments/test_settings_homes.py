"""One home per setting: the config sections are the core's dataclasses (GAN settings, fitting settings)."""

from __future__ import annotations

import dataclasses

from omegaconf import OmegaConf

from experiments.config import CONFIGS_DIR, load_config
from experiments.schemas.gan import TrainGanConfig
from experiments.schemas.h36m import EvalH36MConfig, FittingConfig
from experiments.train_gan import build_gan_module
from pose_prior.fitting import FitSettings
from pose_prior.priors.gan.settings import GanOptimSettings, GanSettings


def test_gan_model_and_optim_sections_are_the_core_settings() -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainGanConfig)}
    assert fields["model"].default_factory is GanSettings and fields["optim"].default_factory is GanOptimSettings
    cfg = load_config(CONFIGS_DIR / "gan_s.yaml")
    assert OmegaConf.to_object(cfg.model) == GanSettings(latent="S")
    assert OmegaConf.to_object(cfg.optim) == GanOptimSettings()


def test_gan_module_takes_the_settings_and_records_them_flat() -> None:
    cfg = load_config(CONFIGS_DIR / "gan_u.yaml", ["model.gen_hidden=16", "model.disc_hidden=8", "optim.d_lr=1e-3"])
    module = build_gan_module(cfg)
    assert module.settings == GanSettings(latent="U", gen_hidden=16, disc_hidden=8)
    assert module.optim_settings == GanOptimSettings(d_lr=1e-3)
    assert dict(module.hparams) == {**dataclasses.asdict(module.settings), **dataclasses.asdict(module.optim_settings),
                                    "seed": 0}
    assert module.generator.hidden == 16 and module.discriminator.hidden == 8


def test_fitting_section_is_fit_settings() -> None:
    ours = {f.name: f for f in dataclasses.fields(FittingConfig)}
    core = {f.name: f for f in dataclasses.fields(FitSettings)}
    assert list(ours) == list(core)
    assert OmegaConf.to_container(OmegaConf.structured(FittingConfig)) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(FitSettings()).items()}
    cfg = load_config(CONFIGS_DIR / "eval_h36m.yaml", ["fitting.body_iters=7", "fitting.ignore_keypoints=[Neck]"])
    settings = FitSettings.from_dict(OmegaConf.to_container(cfg.fitting))
    assert settings.body_iters == 7 and tuple(settings.ignore_keypoints) == ("Neck",)
    assert dataclasses.fields(EvalH36MConfig)[-3].name == "fitting"
