"""A prior kind defined here, outside the package, runs unchanged through fitting, coverage and interpolation.

`LinearBoxPrior`: z in the box [-1, 1]^4, pose = z @ W (W a fixed (4, 63) matrix). It implements only the
`Prior` interface, and each result is checked against a computation from the kind's own definition.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pose_prior import fit_keypoints, load_prior, register_prior_kind
from pose_prior.body_model.keypoint_body import KeypointBody
from pose_prior.body_model.keypoints import keypoint_map_for_body_model
from pose_prior.evaluation.coverage import evaluate_coverage
from pose_prior.evaluation.distance import mesh_distance
from pose_prior.evaluation.interpolation import evaluate_interpolation, interpolation_pairs
from pose_prior.fitting import FitSettings
from pose_prior.fitting.camera import perspective_project
from pose_prior.priors import Prior
from pose_prior.priors.file_format import PRIOR_LOADERS
from pose_prior.rotations import axis_angle_to_matrix, body_pose_to_matrices


class LinearBoxPrior(Prior):
    kind = "linear-box"

    def __init__(self, weight: torch.Tensor, provenance: dict | None = None) -> None:
        super().__init__(provenance)
        self.register_buffer("weight", weight.clone())  # (4, 63)

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def constrained(self) -> bool:
        return True

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return (torch.rand(n, self.latent_dim, generator=generator, dtype=self.dtype) * 2 - 1).to(self.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(-1.0, 1.0)

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)[:, None]
        return (1 - t) * z0[..., None, :] + t * z1[..., None, :]

    def invert(self, body_pose, body_model, return_distance=False, **_):
        z = self.project(torch.linalg.lstsq(self.weight.T, body_pose.to(self.dtype).T).solution.T)
        if not return_distance:
            return z
        return z, mesh_distance(self.vertices(z, body_model), body_model(body_pose.to(self.dtype)).vertices)

    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        return torch.zeros(count, self.latent_dim, dtype=self.dtype, device=self.device)

    def file_entries(self) -> dict:
        return {"linear": {"weight": self.weight.cpu()}}


def _weight() -> torch.Tensor:
    return torch.randn(4, 63, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.15


@pytest.fixture
def toy_kind():
    register_prior_kind("linear-box", lambda payload, path: LinearBoxPrior(payload["linear"]["weight"],
                                                                            payload.get("provenance")))
    yield
    PRIOR_LOADERS.pop("linear-box")


def test_saved_and_loaded_through_the_registry(tmp_path, toy_kind) -> None:
    LinearBoxPrior(_weight()).save(tmp_path / "toy.pt", {"note": "toy"})
    prior = load_prior(tmp_path / "toy.pt")
    assert isinstance(prior, LinearBoxPrior) and prior.provenance["note"] == "toy"
    torch.testing.assert_close(prior.weight, _weight(), rtol=0, atol=0)


def test_fit_keypoints_recovers_a_toy_pose_and_keeps_the_latent_in_the_box(light_body_model_f64) -> None:
    prior = LinearBoxPrior(_weight())
    z_true = torch.tensor([[0.5, -0.7, 0.2, 0.9], [-0.3, 0.4, -0.8, 0.1]], dtype=torch.float64)
    kb = KeypointBody(light_body_model_f64, keypoint_map_for_body_model(light_body_model_f64, "spin24"))
    orient = torch.tensor([[np.pi, 0.0, 0.0], [np.pi, 0.2, 0.0]], dtype=torch.float64)
    transl = torch.tensor([[0.0, 0.1, 12.0], [0.05, 0.0, 11.0]], dtype=torch.float64)
    points = kb(axis_angle_to_matrix(orient), body_pose_to_matrices(prior.decode(z_true)), transl)
    uv = perspective_project(points, torch.zeros(2, 3, dtype=torch.float64), 5000.0,
                             torch.full((2, 2), 112.0, dtype=torch.float64))
    keypoints = torch.cat([uv, torch.ones(2, 24, 1, dtype=torch.float64)], -1)
    seen: list[torch.Tensor] = []
    result = fit_keypoints(prior, light_body_model_f64, keypoints, "spin24",
                           settings=FitSettings(body_iters=300, flip=False, ignore_keypoints=()),
                           monitor=lambda stage, z: seen.append(z.detach().clone()),
                           init_global_orient=orient, init_transl=transl)
    assert all(bool((z.abs() <= 1.0).all()) for z in seen)  # projected onto the box at every evaluation
    torch.testing.assert_close(result.latent, z_true, atol=2e-3, rtol=0)
    torch.testing.assert_close(result.body_pose, prior.decode(result.latent), rtol=0, atol=0)


def test_coverage_of_the_toy_prior_equals_a_brute_force_loop(light_body_model) -> None:
    prior = LinearBoxPrior(_weight().float())
    train = prior.decode(prior.sample(30, generator=torch.Generator().manual_seed(5))).numpy()
    result = evaluate_coverage(prior, light_body_model, train, None, num_generated=40, num_references=10,
                               num_precision=8, chunk_size=16, seed=2)
    # Independent: every generated body against every reference, float64, nearest by a plain loop.
    from pose_prior.evaluation.coverage import GENERATED_STREAM, chunk_seed, rank_chunks
    from pose_prior.rows import sample_rows

    generated = torch.cat([prior.sample(n, generator=torch.Generator().manual_seed(chunk_seed(2, GENERATED_STREAM, c)))
                           for c, _, n in rank_chunks(40, 16)])
    gen_v = light_body_model(prior.decode(generated)).vertices.double()
    ref_v = light_body_model(torch.from_numpy(train[sample_rows(30, 10, 2)])).vertices.double()
    expected = torch.stack([min((r - g).norm(dim=-1).mean() for g in gen_v) for r in ref_v]) * 1000
    torch.testing.assert_close(result.recall["train"].distance_mm, expected, rtol=1e-4, atol=1e-3)


def test_interpolation_of_the_toy_prior_follows_its_own_scheme(light_body_model) -> None:
    prior = LinearBoxPrior(_weight().float())
    poses = prior.decode(prior.sample(12, generator=torch.Generator().manual_seed(8))).numpy()
    stats = evaluate_interpolation(prior, light_body_model, poses, num_pairs=3, steps=5, seed=1, batch_size=2)
    start, end = interpolation_pairs(len(poses), 3, 1)
    for p in range(3):  # the toy's own inversion is exact here, so the path is its linear one
        z0, z1 = (prior.invert(torch.from_numpy(poses[i][None]), light_body_model)[0] for i in (start[p], end[p]))
        verts = light_body_model(prior.decode(prior.interpolate(z0, z1, 5))).vertices.double()
        d = (verts[1:] - verts[:-1]).norm(dim=-1).mean(-1) * 1000
        torch.testing.assert_close(stats.ratio[p], d.max() / d.min(), rtol=1e-3, atol=1e-6)


def test_the_package_has_no_branch_on_prior_kinds() -> None:
    """Consumers reach priors through the interface only: no latent-type or kind strings outside the priors."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"""latent_type\s*==|prior\.kind\s*==|\bkind\s*==\s*["'](gan|vposer|gmm|none)["']|"""
                         r"""isinstance\([^)]*\b(GANPrior|VPoserPrior|GMMPrior|NoPrior)\b""")
    offenders = []
    for folder in ("pose_prior", "lightning_modules", "callbacks", "datamodules", "experiments"):
        for path in (root / folder).rglob("*.py"):
            if path.is_relative_to(root / "pose_prior" / "priors"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{os.path.relpath(path, root)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
