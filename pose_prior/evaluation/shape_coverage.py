"""Shape coverage of a shape prior (paper supplement D; the pose coverage of Sec. 4.1 applied to betas).

Bodies are in the zero pose with their betas (zero orientation), so Eq. 5 (mean per-vertex distance)
measures the shape alone; with body poses given (GAN-theta-beta, the disentangled pair), the bodies are
posed, each with its own betas, and Eq. 5 measures pose and shape together. Recall: for each reference body of a split, the Eq. 5 distance to the nearest of
`num_generated` generated bodies. Precision: for each generated body, the distance to the nearest body of
the split. Distances in mm, as the pose coverage reports them. The unbounded baseline is SMPL's own PCA
prior, betas ~ N(0, I) (`normal_betas`).

The search is exact and streams over chunks of generated bodies against the split's bodies held whole
(a shape split is small): by default with the pose coverage's exact search (lower bounds, then an exact
re-rank), or pair by pair with `pose_prior.evaluation.distance.mesh_distance_matrix` (`method="brute"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from pose_prior.body_model.posing import as_vertices
from pose_prior.evaluation.coverage import distance_stats
from pose_prior.evaluation.distance import mesh_distance_matrix
from pose_prior.evaluation.nearest import ExactNearestMeshSearch, StreamingNearestMesh

MM_PER_M = 1000.0


@torch.no_grad()
def shape_vertices(body_model: nn.Module, betas: torch.Tensor, chunk: int = 1024,
                   body_pose: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) betas -> (N, V, 3) vertices, zero orientation (model units, metres); in the zero pose, or in
    `body_pose` (N, 63) axis-angle when given."""
    if body_pose is not None and body_pose.shape[0] != betas.shape[0]:
        raise ValueError(f"{betas.shape[0]} betas but {body_pose.shape[0]} body poses")
    out = []
    for start in range(0, betas.shape[0], chunk):
        b = betas[start:start + chunk].to(device=_device(body_model), dtype=_dtype(body_model))
        pose = b.new_zeros(b.shape[0], 63) if body_pose is None else body_pose[start:start + chunk].to(b)
        out.append(as_vertices(body_model(pose, betas=b)).reshape(b.shape[0], -1, 3))
    return torch.cat(out)


def _device(module: nn.Module) -> torch.device:
    t = next(iter(module.buffers()), None)
    t = t if t is not None else next(iter(module.parameters()), None)
    return t.device if t is not None else torch.device("cpu")


def _dtype(module: nn.Module) -> torch.dtype:
    t = next((b for b in module.buffers() if b.is_floating_point()), None)
    return t.dtype if t is not None else torch.float32


def normal_betas(n: int, num_betas: int = 10, seed: int = 0) -> torch.Tensor:
    """(n, K) betas ~ N(0, I): SMPL's unbounded PCA prior, the baseline (CPU generator seeded by `seed`)."""
    return torch.randn(n, num_betas, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def prior_betas(prior: nn.Module, n: int, seed: int = 0, chunk: int = 4096) -> torch.Tensor:
    """(n, K) betas from a prior with `decode_betas` (GAN-beta, GAN-theta-beta, the pair): latents drawn
    from a CPU generator seeded by `seed`, decoded in chunks."""
    z = prior.sample(n, generator=torch.Generator().manual_seed(seed))
    return torch.cat([prior.decode_betas(part).detach().cpu() for part in z.split(chunk)])


@dataclass
class ShapeNearest:
    """Per query: Eq. 5 distance (mm, float64) to its nearest neighbour and that neighbour's index."""

    distance_mm: torch.Tensor  # (Q,) float64
    index: torch.Tensor  # (Q,) int64

    def stats(self) -> dict[str, float]:
        return distance_stats(self.distance_mm)


@dataclass
class ShapeCoverage:
    recall: ShapeNearest  # per reference body: nearest generated body
    precision: ShapeNearest  # per generated body: nearest reference body

    def summary(self) -> dict[str, Any]:
        return {"recall": self.recall.stats(), "precision": self.precision.stats(),
                "num_references": int(self.recall.index.numel()), "num_generated": int(self.precision.index.numel())}


@torch.no_grad()
def evaluate_shape_coverage(generated_betas: torch.Tensor, reference_betas: torch.Tensor, body_model: nn.Module,
                            chunk: int = 1024, dtype: torch.dtype = torch.float32,
                            method: Literal["bounds", "brute"] = "bounds",
                            generated_poses: torch.Tensor | None = None,
                            reference_poses: torch.Tensor | None = None) -> ShapeCoverage:
    """Recall of `reference_betas` (R, K) by `generated_betas` (G, K) and precision of the generated bodies
    against the references, under Eq. 5 in the zero pose, or posed when `generated_poses` (G, 63) and
    `reference_poses` (R, 63) are given (both or neither); generated bodies are made `chunk` at a time.

    `method`: "bounds" = the pose coverage's exact search (`StreamingNearestMesh` for recall,
    `ExactNearestMeshSearch` for precision: lower bounds skip most pairs, the survivors are re-ranked
    exactly); "brute" = every pair with `mesh_distance_matrix`. Both are exact; `dtype` is the distance
    computation's float type."""
    if generated_betas.shape[0] == 0 or reference_betas.shape[0] == 0:
        raise ValueError("shape coverage needs at least one generated and one reference body")
    if (generated_poses is None) != (reference_poses is None):
        raise ValueError("give body poses for both the generated and the reference bodies, or for neither")
    refs = shape_vertices(body_model, reference_betas, body_pose=reference_poses).to(dtype)  # (R, V, 3), held whole: a split is small
    G = generated_betas.shape[0]
    if method == "bounds":
        recall = StreamingNearestMesh(refs, dtype=dtype)
        search = ExactNearestMeshSearch(refs, dtype=dtype)
    prec_d, prec_i = [], []
    recall_d = torch.full((refs.shape[0],), float("inf"), dtype=dtype)
    recall_i = torch.full((refs.shape[0],), -1, dtype=torch.long)
    for start in range(0, G, chunk):
        poses = None if generated_poses is None else generated_poses[start:start + chunk]
        gen = shape_vertices(body_model, generated_betas[start:start + chunk], body_pose=poses).to(dtype)  # (g, V, 3)
        if method == "bounds":
            recall.update(gen, start)
            dist_p, idx_p = search.search(gen)
        else:
            d = mesh_distance_matrix(refs, gen, dtype=dtype).cpu()  # (R, g)
            dist, idx = d.min(dim=1)  # first occurrence on ties
            better = dist < recall_d  # strict: an earlier chunk keeps ties
            recall_d = torch.where(better, dist, recall_d)
            recall_i = torch.where(better, idx + start, recall_i)
            dist_p, idx_p = d.min(dim=0)  # (g,) nearest reference of each generated body
        prec_d.append(dist_p.cpu())
        prec_i.append(idx_p.cpu())
    if method == "bounds":
        recall_d, recall_i = (t.cpu() for t in recall.compute())
    to_mm = lambda x: x.double() * MM_PER_M  # noqa: E731
    return ShapeCoverage(ShapeNearest(to_mm(recall_d), recall_i),
                         ShapeNearest(to_mm(torch.cat(prec_d)), torch.cat(prec_i)))
