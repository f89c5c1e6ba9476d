"""Files written by an earlier version (tests/fixtures/legacy) still load and give the same outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pose_prior.fitting.keypoint_fit import FitSettings, fit_keypoints
from pose_prior.priors import load_prior

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
KINDS = ("gan_S", "gan_U", "gan_N", "vposer", "gmm")


@pytest.fixture(scope="module")
def expected() -> dict:
    return torch.load(LEGACY / "expected_outputs.pt", weights_only=True)


@pytest.mark.parametrize("kind", KINDS)
def test_prior_file_outputs_unchanged(kind: str, expected: dict, light_body_model) -> None:
    prior = load_prior(LEGACY / f"{kind}.pt")
    z = prior.sample(4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(z, expected[f"{kind}/sample"], rtol=0, atol=0)
    torch.testing.assert_close(prior.decode(z), expected[f"{kind}/decode"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(prior.project(z * 3.0), expected[f"{kind}/project"], rtol=0, atol=0)
    torch.testing.assert_close(prior.interpolate(z[0], z[1], 5), expected[f"{kind}/interpolate"], rtol=0, atol=0)
    zi, d = prior.invert(expected["test_pose"], light_body_model, steps=5, candidates=16, restarts=2,
                         refine_iters=2, return_distance=True)
    torch.testing.assert_close(d, expected[f"{kind}/invert_distance"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(zi, expected[f"{kind}/invert"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", ("none",) + KINDS)
def test_keypoint_fit_unchanged(kind: str, light_body_model) -> None:
    fits = torch.load(LEGACY / "expected_fits.pt", weights_only=True)
    prior = None if kind == "none" else load_prior(LEGACY / f"{kind}.pt")
    result = fit_keypoints(prior, light_body_model, fits["keypoints"], "spin24",
                           # the fits were stored by the fitting code of that time: fixed iteration counts, no
                           # evaluation cap, and a fresh evaluation at every projected point (today's defaults stop
                           # early and take the projected gradient by the chain rule), all still reachable by settings
                           settings=FitSettings(camera_iters=5, body_iters=8, restarts=2, candidates=16,
                                                stop_window=0, max_eval_factor=0, reevaluate_projected=True))
    for key in ("body_pose", "global_orient", "transl"):
        torch.testing.assert_close(getattr(result, key), fits[f"{kind}/{key}"], rtol=1e-4, atol=1e-4)
    for key in ("iterations", "flipped", "start"):
        assert torch.equal(getattr(result, key), fits[f"{kind}/{key}"]), key
    for name, value in result.losses.items():
        torch.testing.assert_close(value, fits[f"{kind}/loss_{name}"], rtol=1e-4, atol=1e-4)
    assert set(result.losses) == {k.split("/loss_")[1] for k in fits if k.startswith(f"{kind}/loss_")}


def test_gan_lightning_checkpoint_loads() -> None:
    from lightning_modules.adversarial_prior import AdversarialPriorModule

    module = AdversarialPriorModule.load_from_checkpoint(LEGACY / "gan_s_lightning.ckpt", map_location="cpu",
                                                         weights_only=False).eval()
    out = torch.load(LEGACY / "gan_s_lightning_outputs.pt", weights_only=True)
    with torch.no_grad():
        fake = module.generator(out["z"])
        torch.testing.assert_close(fake, out["generator"], rtol=0, atol=0)
        torch.testing.assert_close(module.discriminator(fake), out["discriminator"], rtol=0, atol=0)
    prior = load_prior(LEGACY / "gan_s_from_run.pt")
    torch.testing.assert_close(prior.decode_matrices(out["z"]), out["generator"], rtol=0, atol=0)
