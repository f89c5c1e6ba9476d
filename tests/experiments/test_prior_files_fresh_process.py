"""`load_prior(path)` reads all three prior kinds (gan, vposer, gmm) in a fresh process that imported nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from pose_prior.priors import GMMPrior, VPoserPrior, load_prior, save_prior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.gmm.model import GaussianMixturePrior
from pose_prior.priors.latent import make_latent
from pose_prior.priors.vposer.model import VPoser
from tests.pose_prior.test_gmm import random_mixture

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    import torch
    from pose_prior import load_prior
    kinds = ("pose_prior.priors.gan.prior", "pose_prior.priors.vposer.prior", "pose_prior.priors.gmm.prior")
    assert not any(k in sys.modules for k in kinds)  # each kind is imported when a file of it is read
    folder = sys.argv[1]
    inputs = torch.load(f"{folder}/inputs.pt")
    out = {}
    for kind in ("gan", "vposer", "gmm"):
        prior = load_prior(f"{folder}/{kind}.pt")
        assert f"pose_prior.priors.{kind}.prior" in sys.modules
        z = inputs[kind]
        out[kind] = {"latent_type": prior.latent_type, "class": type(prior).__name__, "decode": prior.decode(z)}
        if kind == "gmm":
            out[kind]["log_prob"] = prior.log_prob(z)
    torch.save(out, f"{folder}/outputs.pt")
    """
)


def test_all_prior_kinds_load_in_a_fresh_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_prior(tmp_path / "gan.pt", PoseGenerator(latent_dim=32), make_latent("S", 32))
    VPoserPrior(VPoser(num_neurons=64).eval()).save(tmp_path / "vposer.pt")
    GMMPrior(GaussianMixturePrior(*random_mixture(k=3, d=63, seed=2))).save(tmp_path / "gmm.pt")
    priors = {kind: load_prior(tmp_path / f"{kind}.pt") for kind in ("gan", "vposer", "gmm")}
    inputs = {kind: p.sample(4, generator=torch.Generator().manual_seed(1)) for kind, p in priors.items()}
    torch.save(inputs, tmp_path / "inputs.pt")

    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, check=True, timeout=120)

    out = torch.load(tmp_path / "outputs.pt")
    expected = {"gan": ("S", "GANPrior"), "vposer": ("N", "VPoserPrior"), "gmm": ("pose", "GMMPrior")}
    for kind, prior in priors.items():
        assert (out[kind]["latent_type"], out[kind]["class"]) == expected[kind]
        torch.testing.assert_close(out[kind]["decode"], prior.decode(inputs[kind]), rtol=0, atol=0)
    torch.testing.assert_close(out["gmm"]["log_prob"], priors["gmm"].log_prob(inputs["gmm"]), rtol=0, atol=0)
