"""Exact Eq. 5 nearest neighbours: bounds, search and streaming recall against float64 brute-force loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pose_prior.evaluation.nearest import (
    NO_INDEX,
    ExactNearestMeshSearch,
    StreamingNearestMesh,
    brute_force_nearest,
    merge_nearest,
    mesh_distance_matrix,
    paired_mesh_distance,
)
from pose_prior.evaluation.nearest.bounds import (
    VertexGroups,
    coarse_distance_matrix,
    farthest_point_pivots,
    group_vertices,
    pivot_candidates,
)
from pose_prior.evaluation.nearest.synthetic_bodies import (
    ArticulatedStandIn,
    load_pose_to_vertices,
    posed_bodies,
)

MM = 1e-3  # metres


@pytest.fixture(scope="module")
def pose_to_vertices():
    return load_pose_to_vertices("open-light")


@pytest.fixture(scope="module")
def bodies(pose_to_vertices) -> dict[str, torch.Tensor]:
    return {
        "references": posed_bodies(48, seed=1, pose_to_vertices=pose_to_vertices),
        "generated": posed_bodies(400, seed=2, pose_to_vertices=pose_to_vertices),
    }


def loop_nearest_float64(queries: torch.Tensor, database: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent float64 brute force: one query at a time over every database body."""
    db = database.double()
    dist, index = [], []
    for q in queries.double():
        d = (db - q).norm(dim=-1).mean(-1)  # (N,)
        i = int(d.argmin())
        dist.append(float(d[i]))
        index.append(i)
    return torch.tensor(dist, dtype=torch.float64), torch.tensor(index)


def assert_same_nearest(dist, index, ref_dist, ref_index, database, queries) -> None:
    """Same neighbour for every query (unless the float64 distances tie within 1e-9 m), distance within 1e-3 mm."""
    assert torch.all((dist.double() - ref_dist).abs() < 1e-3 * MM)
    differ = (index != ref_index).nonzero().flatten()
    for q in differ.tolist():  # only an exact tie may pick another body
        other = (database[index[q]].double() - queries[q].double()).norm(dim=-1).mean()
        assert abs(float(other) - float(ref_dist[q])) < 1e-9, f"query {q}: {index[q]} vs {ref_index[q]}"


def test_using_open_light_model_or_standin(pose_to_vertices, bodies):
    v = bodies["references"]
    assert v.shape[1:] == (1229, 3) if getattr(pose_to_vertices, "name", "") == "open-light" else v.shape[2] == 3
    assert torch.isfinite(v).all() and 1.0 < float(v[..., 1].amax(1).mean() - v[..., 1].amin(1).mean()) < 2.2


def test_distances_match_numpy_float64(bodies):
    a, b = bodies["references"][:5], bodies["generated"][:7]
    expected = np.array([[np.mean(np.linalg.norm(x - y, axis=1)) for y in b.double().numpy()]
                         for x in a.double().numpy()])
    np.testing.assert_allclose(mesh_distance_matrix(a, b, query_chunk=2, database_chunk=3, vertex_chunk=100)
                               .numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(paired_mesh_distance(a, b[:5], chunk=2).numpy(), np.diag(expected[:, :5]), rtol=1e-5)
    np.testing.assert_allclose(mesh_distance_matrix(a, b, dtype=torch.float64).numpy(), expected, rtol=1e-12)


def test_eq5_is_not_flattened_l2_but_bounded_by_it(bodies):
    a, b = bodies["references"][:20], bodies["generated"][:50]
    d = mesh_distance_matrix(a, b, dtype=torch.float64)
    l2 = torch.cdist(a.flatten(1).double(), b.flatten(1).double())
    v = a.shape[1]
    assert torch.all(l2 / v <= d + 1e-12) and torch.all(d <= l2 / v ** 0.5 + 1e-12)


@pytest.mark.parametrize("num_groups", [1, 8, 128, "per-vertex"])
def test_coarse_bound_is_a_lower_bound(bodies, num_groups):
    a, b = bodies["references"], bodies["generated"][:200]
    if num_groups == "per-vertex":
        groups = VertexGroups.from_labels(torch.arange(a.shape[1]))
    else:
        groups = group_vertices(b[:16], num_groups)
    assert torch.isclose(groups.weights.sum(), torch.tensor(1.0))
    exact = mesh_distance_matrix(a, b, dtype=torch.float64)
    bound = coarse_distance_matrix(groups.centroids(a.double()), groups.centroids(b.double()), groups.weights)
    assert torch.all(bound <= exact + 1e-12)
    if num_groups == "per-vertex":  # one vertex per group: the bound is Eq. 5 itself
        torch.testing.assert_close(bound, exact)
    if num_groups == 128:  # tight on posed bodies: the reason it prunes
        assert float((bound / exact).median()) > 0.9


def test_pivot_bound_is_a_lower_bound(bodies):
    a, b = bodies["references"].double(), bodies["generated"][:200].double()
    groups = group_vertices(b[:16], 32)
    ca, cb = groups.centroids(a), groups.centroids(b)
    pivots = cb[farthest_point_pivots(cb, groups.weights, 8)]
    coarse = coarse_distance_matrix(ca, cb, groups.weights)
    pa, pb = coarse_distance_matrix(ca, pivots, groups.weights), coarse_distance_matrix(cb, pivots, groups.weights)
    bound = (pa[:, None] - pb[None]).abs().amax(-1)
    assert torch.all(bound <= coarse + 1e-12)
    upper = coarse.amin(1)  # every pair at or below the upper bound must be kept
    assert torch.all(pivot_candidates(pa, pb, upper, 0.0)[coarse <= upper[:, None]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_search_equals_float64_brute_force(bodies, dtype):
    queries, database = bodies["references"], bodies["generated"]
    search = ExactNearestMeshSearch(database, levels=(4, 32), shortlist_k=2, dtype=dtype, query_block=17)
    dist, index = search.search(queries)
    ref_dist, ref_index = loop_nearest_float64(queries, database)
    assert_same_nearest(dist, index, ref_dist, ref_index, database, queries)
    if dtype == torch.float64:
        assert torch.equal(index, ref_index)
    stats = search.stats.as_dict()
    assert stats["exact"] < stats["pairs"] / 4  # the bounds excluded most pairs


def test_streaming_recall_equals_brute_force_for_any_chunking(bodies):
    references, generated = bodies["references"], bodies["generated"]
    ref_dist, ref_index = loop_nearest_float64(references, generated)
    results = []
    for chunk in (37, 400):
        stream = StreamingNearestMesh(references, levels=(8, 64), shortlist_k=1)
        for offset in range(0, generated.shape[0], chunk):
            stream.update(generated[offset:offset + chunk], offset)
        results.append(stream.compute())
        assert stream.seen == generated.shape[0]
    for dist, index in results:
        assert_same_nearest(dist, index, ref_dist, ref_index, generated, references)
        assert torch.equal(dist, results[0][0]) and torch.equal(index, results[0][1])


def test_precision_equals_brute_force(bodies):
    """Precision: generated bodies as queries against the real bodies as a fixed database."""
    real, generated = bodies["generated"][:300], bodies["references"]
    dist, index = ExactNearestMeshSearch(real).search(generated)
    brute_dist, brute_index = brute_force_nearest(generated, real, chunk=128)
    ref_dist, ref_index = loop_nearest_float64(generated, real)
    assert_same_nearest(dist, index, ref_dist, ref_index, real, generated)
    assert_same_nearest(brute_dist, brute_index, ref_dist, ref_index, real, generated)


def adversarial_case(base: torch.Tensor, num_decoys: int = 200) -> tuple[torch.Tensor, int]:
    """Database where flattened L2 ranks a decoy first but Eq. 5 ranks body `target` first.

    target: one vertex moved 0.5 m (L2 = 500 mm, Eq. 5 = 500/V mm). decoys: every vertex moved by
    3-6 mm in random directions (L2 = sqrt(V) * 3-6 mm < 500 mm, Eq. 5 = 3-6 mm).
    """
    g = torch.Generator().manual_seed(3)
    v = base.shape[0]
    directions = torch.nn.functional.normalize(torch.randn(num_decoys, v, 3, generator=g, dtype=torch.float64), dim=-1)
    sizes = 0.003 + 0.003 * torch.rand(num_decoys, 1, 1, generator=g, dtype=torch.float64)
    decoys = base.double() + sizes * directions
    target = base.double().clone()
    target[v // 2, 0] += 0.5
    target_index = num_decoys // 2
    database = torch.cat([decoys[:target_index], target[None], decoys[target_index:]]).float()
    return database, target_index


def test_adversarial_l2_order_differs_from_eq5_order(bodies):
    base = bodies["references"][0]
    database, target = adversarial_case(base)
    l2_nearest = int(torch.cdist(base.flatten()[None].double(), database.flatten(1).double()).argmin())
    assert l2_nearest != target  # L2 ranks a decoy first...
    queries = base[None]
    dist, index = ExactNearestMeshSearch(database, levels=(8, 32), shortlist_k=1).search(queries)
    assert int(index) == target  # ...yet the search returns the Eq. 5 nearest
    ref_dist, _ = loop_nearest_float64(queries, database)
    assert abs(float(dist) - float(ref_dist)) < 1e-3 * MM
    stream = StreamingNearestMesh(queries, levels=(8, 32), shortlist_k=1)
    for offset in range(0, database.shape[0], 50):
        stream.update(database[offset:offset + 50], offset)
    assert int(stream.compute()[1]) == target


def test_exact_ties_go_to_the_lowest_global_index(bodies):
    references, generated = bodies["references"][:10], bodies["generated"][:100]
    database = torch.cat([generated, generated])  # every body twice: indices i and i + 100 tie exactly
    stream = StreamingNearestMesh(references, levels=(8, 32))
    for offset in (100, 0):  # later indices first: the tie rule, not the order, decides
        stream.update(database[offset:offset + 100], offset)
    dist, index = stream.compute()
    _, ref_index = loop_nearest_float64(references, generated)
    assert torch.equal(index, ref_index)
    assert torch.equal(ExactNearestMeshSearch(database).search(references)[1], ref_index)


def test_merging_partial_states_equals_one_stream(bodies):
    """What a DDP min-reduction does: ranks see disjoint shards; merge = min distance, index follows."""
    references, generated = bodies["references"], bodies["generated"]
    whole = StreamingNearestMesh(references, levels=(8, 32))
    whole.update(generated, 0)
    shards = [StreamingNearestMesh(references, levels=(8, 32)) for _ in range(2)]
    for rank, shard in enumerate(shards):
        for offset in range(rank * 100, generated.shape[0], 200):  # interleaved blocks of 100
            shard.update(generated[offset:offset + 100], offset)
    merged = merge_nearest(*shards[0].compute(), *shards[1].compute())
    assert torch.equal(merged[0], whole.compute()[0]) and torch.equal(merged[1], whole.compute()[1])
    empty = StreamingNearestMesh(references).compute()
    assert torch.all(empty[1] == NO_INDEX) and torch.equal(merge_nearest(*empty, *merged)[1], merged[1])


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from pose_prior.evaluation.nearest import all_reduce_nearest

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(rank)
    d = torch.tensor([1.0, 2.0, 3.0, 0.5]) if rank == 0 else torch.tensor([1.0, 1.5, 4.0, 0.5])
    i = torch.tensor([10, 11, 12, 13]) if rank == 0 else torch.tensor([7, 20, 21, 30])
    reduced = all_reduce_nearest(d, i)
    torch.save(reduced, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_all_reduce_nearest_across_two_gloo_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        d, i = torch.load(tmp_path / f"rank{rank}.pt")
        assert d.tolist() == [1.0, 1.5, 3.0, 0.5]
        assert i.tolist() == [7, 20, 12, 13]  # ties (1.0, 0.5) -> lowest global index


MEMORY_CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
from pose_prior.evaluation.nearest import StreamingNearestMesh
from pose_prior.evaluation.nearest.synthetic_bodies import load_pose_to_vertices, posed_bodies
total, chunk = int(sys.argv[1]), int(sys.argv[2])
f = load_pose_to_vertices("open-light")
stream = StreamingNearestMesh(posed_bodies(64, seed=1, pose_to_vertices=f))
stream.update(posed_bodies(chunk, seed=99, pose_to_vertices=f), 0)  # warm-up: allocator, FAISS
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for offset in range(0, total, chunk):
    stream.update(posed_bodies(chunk, seed=100 + offset, pose_to_vertices=f), offset)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kb": base, "peak_kb": peak, "seen": stream.seen}))
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_generated_count():
    def run(total: int) -> dict:
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(total), "1000"], capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        return json.loads(out.stdout.strip().splitlines()[-1])

    small, large = run(2000), run(20000)
    assert large["seen"] == 21000  # warm-up chunk included
    growth_kb = large["peak_kb"] - small["peak_kb"]
    # 18k more bodies held at once would be 18k * 15 KB = 265 MB; the state is (R,) tensors
    assert growth_kb < 30_000, (small, large)


def test_standin_zero_pose_is_rest_and_poses_move_vertices():
    model = ArticulatedStandIn(num_vertices=300)
    rest = model(torch.zeros(2, 63))
    torch.testing.assert_close(rest[0], model.rest_vertices)
    pose = torch.zeros(1, 63)
    pose[0, 3 * 17 + 2] = 1.0  # body joint 17 (left elbow) about z: only forearm and hand vertices move
    moved = (model(pose)[0] - model.rest_vertices).norm(dim=1)
    assert 0 < int((moved > 1e-4).sum()) < 150


def test_gpu_shortlist_uses_the_process_current_cuda_device(monkeypatch) -> None:
    """Each DDP rank sets its CUDA device; the FAISS GPU index must follow it, not sit on GPU 0."""
    import types

    import pose_prior.evaluation.nearest.faiss_index as fi

    made = {}

    class Config:
        device = -1

    class GpuIndex:
        def __init__(self, resources, dim, config):
            made["device"], made["dim"] = config.device, dim
            self.ntotal = 0

        def add(self, x):
            self.ntotal += len(x)

    fake = types.SimpleNamespace(GpuIndexFlatConfig=Config, GpuIndexFlatL2=GpuIndex,
                                 StandardGpuResources=lambda: object(), get_num_gpus=lambda: 2)
    monkeypatch.setattr(fi, "import_faiss", lambda: fake)
    monkeypatch.setattr(fi, "_GPU_RESOURCES", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    index = fi.FlatL2Shortlist(torch.zeros(5, 3))
    assert index.on_gpu and made == {"device": 1, "dim": 3} and len(index) == 5
    fi.FlatL2Shortlist(torch.zeros(5, 3), device=0)
    assert made["device"] == 0
