"""Coverage (recall / precision) and the interpolation evaluation against independent float64 loops."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pose_prior.evaluation.coverage import (
    GENERATED_STREAM,
    chunk_seed,
    evaluate_coverage,
    rank_chunks,
    sample_rows,
)
from pose_prior.evaluation.interpolation import evaluate_interpolation, interpolation_pairs
from pose_prior.priors import GANPrior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent


def small_prior(latent: str = "S", seed: int = 0) -> GANPrior:
    torch.manual_seed(seed)
    gen = PoseGenerator(latent_dim=32)
    with torch.no_grad():  # small random weights: poses in a plausible range
        for p in gen.parameters():
            p.mul_(0.3)
    return GANPrior(gen, make_latent(latent, 32))


def random_poses(n: int, seed: int) -> np.ndarray:
    return (torch.randn(n, 63, generator=torch.Generator().manual_seed(seed)) * 0.25).numpy()


def loop_nearest_f64(queries: torch.Tensor, database: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per query: float64 Eq. 5 to every database body, one query at a time (mm, index)."""
    dist, index = [], []
    for q in queries:
        d = (database - q).norm(dim=-1).mean(-1)  # (N,)
        i = int(d.argmin())
        dist.append(float(d[i]) * 1000.0)
        index.append(i)
    return np.array(dist), np.array(index)


def f64_vertices(body_model_f64, poses: torch.Tensor) -> torch.Tensor:
    return body_model_f64(poses.double()).vertices.reshape(poses.shape[0], -1, 3)


def test_recall_and_precision_equal_float64_brute_force(light_body_model, light_body_model_f64) -> None:
    prior = small_prior("S")
    train, test = random_poses(90, 1), random_poses(50, 2)
    gen_count, chunk, seed = 200, 64, 5
    result = evaluate_coverage(prior, light_body_model, train, test, num_generated=gen_count, num_references=25,
                               num_precision=20, chunk_size=chunk, seed=seed, nearest_kwargs={"levels": (8, 32)})
    # Independent: the generated set from its definition (chunk c seeded by chunk_seed), float64 bodies.
    poses = []
    for c, _, n in rank_chunks(gen_count, chunk):
        z = prior.sample(n, generator=torch.Generator().manual_seed(chunk_seed(seed, GENERATED_STREAM, c)))
        poses.append(prior.decode(z))
    generated = f64_vertices(light_body_model_f64, torch.cat(poses).detach())  # (200, V, 3)
    assert generated.shape[0] == gen_count
    for split, source in (("train", train), ("test", test)):
        rows = result.reference_rows[split]
        assert len(rows) == 25 and len(set(rows.tolist())) == 25
        refs = f64_vertices(light_body_model_f64, torch.from_numpy(source[rows]))
        d, i = loop_nearest_f64(refs, generated)
        np.testing.assert_array_equal(result.recall[split].index.numpy(), i)
        np.testing.assert_allclose(result.recall[split].distance_mm.numpy(), d, atol=1e-3, rtol=0)
        queries = f64_vertices(light_body_model_f64, result.generated_poses)
        db = f64_vertices(light_body_model_f64, torch.from_numpy(source))
        d, i = loop_nearest_f64(queries, db)
        np.testing.assert_array_equal(result.precision[split].index.numpy(), i)
        np.testing.assert_allclose(result.precision[split].distance_mm.numpy(), d, atol=1e-3, rtol=0)
        s = result.summary()[split]["recall"]
        r = result.recall[split].distance_mm.numpy()
        assert s["mean_mm"] == pytest.approx(r.mean()) and s["median_mm"] == pytest.approx(np.median(r))
        assert s["std_mm"] == pytest.approx(r.std())


def test_generated_set_does_not_depend_on_process_count() -> None:
    """Chunks of 2 ranks partition the single-process chunks (disjoint global indices, same seeds)."""
    single = list(rank_chunks(1000, 96))
    ranks = [list(rank_chunks(1000, 96, r, 2)) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == single
    assert not {c for c, _, _ in ranks[0]} & {c for c, _, _ in ranks[1]}
    assert sum(n for _, _, n in single) == 1000
    assert len({chunk_seed(0, 0, c) for c in range(100)}) == 100


def test_sample_rows_is_seeded_sorted_and_distinct() -> None:
    a, b = sample_rows(1000, 50, 3), sample_rows(1000, 50, 3)
    np.testing.assert_array_equal(a, b)
    assert (np.diff(a) > 0).all() and len(a) == 50
    np.testing.assert_array_equal(sample_rows(10, 50, 0), np.arange(10))


MEMORY_SCRIPT = """
import json, resource, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from tests.pose_prior.test_coverage import small_prior, random_poses
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.coverage import evaluate_coverage
bm = load_body_model("open-light", "smpl")
evaluate_coverage(small_prior(), bm, random_poses(60, 1), None, num_generated=int(sys.argv[1]), num_references=40,
                  num_precision=20, chunk_size=500, seed=0, precision_database=60)
print(json.dumps({{"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_generated_count(tmp_path) -> None:
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[2])
    script = tmp_path / "mem.py"
    script.write_text(MEMORY_SCRIPT.format(root=root))
    rss = {}
    for n in (2000, 20000):
        out = subprocess.run([sys.executable, str(script), str(n)], capture_output=True, text=True, check=True,
                             cwd=root, timeout=600)
        rss[n] = json.loads(out.stdout.strip().splitlines()[-1])["maxrss_kb"] / 1024
    # one chunk of 500 light bodies is ~7 MB; 10x the generated bodies (18k more, ~250 MB if held) adds < 40 MB
    assert rss[20000] - rss[2000] < 40, rss


def test_interpolation_of_gmm_prior_equals_pose_space_loop(light_body_model, light_body_model_f64) -> None:
    """GMM prior: invert is the identity and interpolation linear in pose, so Eq. 6 has a direct float64 form."""
    from pose_prior.priors import GMMPrior
    from pose_prior.priors.gmm.model import fit_gmm

    poses = random_poses(40, 3)
    prior = GMMPrior(fit_gmm(poses.astype(np.float64), n_components=2, seed=0, max_iter=5))
    stats = evaluate_interpolation(prior, light_body_model, poses, num_pairs=6, steps=7, seed=4, batch_size=4)
    start, end = interpolation_pairs(len(poses), 6, 4)
    assert (start != end).all()
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    for p in range(6):
        a, b = torch.from_numpy(poses[start[p]]).double(), torch.from_numpy(poses[end[p]]).double()
        verts = f64_vertices(light_body_model_f64, (1 - t)[:, None] * a + t[:, None] * b)  # (7, V, 3)
        d = (verts[1:] - verts[:-1]).norm(dim=-1).mean(-1)  # (6,)
        endpoint = (verts[-1] - verts[0]).norm(dim=-1).mean()
        assert float(stats.ratio[p]) == pytest.approx(float(d.max() / d.min()), rel=1e-4)
        np.testing.assert_allclose(stats.normalised[p].numpy(), (d / (endpoint / 6)).numpy(), rtol=1e-4)
        np.testing.assert_allclose(stats.steps_mm[p].numpy(), (d * 1000).numpy(), rtol=1e-4)
    assert stats.summary()["pairs"] == 6 and stats.summary()["steps"] == 6


def test_interpolation_of_gan_prior_inverts_endpoints(light_body_model) -> None:
    """Endpoints of a GAN path are the inverted test bodies: decoding z0 reproduces generator bodies exactly."""
    prior = small_prior("S", seed=1)
    z = prior.sample(8, generator=torch.Generator().manual_seed(0))
    poses = prior.decode(z).detach().numpy()  # test bodies the prior can represent exactly
    stats = evaluate_interpolation(prior, light_body_model, poses, num_pairs=2, steps=5, seed=0,
                                   invert_kwargs={"candidates": 16, "restarts": 2, "refine_iters": 6}, batch_size=2)
    start, end = interpolation_pairs(8, 2, 0)
    true = light_body_model(torch.from_numpy(poses)).vertices
    direct = (true[start] - true[end]).norm(dim=-1).mean(-1) * 1000  # (2,) mm
    np.testing.assert_allclose(stats.endpoint_mm.numpy(), direct.numpy(), atol=1.0)  # inversion within 1 mm
    assert (stats.ratio >= 1).all() and stats.normalised.shape == (2, 4)
