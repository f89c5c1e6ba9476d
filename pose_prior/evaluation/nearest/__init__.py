"""Exact nearest neighbours under the paper's Eq. 5 (mean per-vertex Euclidean distance), at scale."""

from pose_prior.evaluation.distance import brute_force_nearest, mesh_distance_matrix, paired_mesh_distance
from pose_prior.evaluation.nearest.exact import NO_INDEX, SearchStats
from pose_prior.evaluation.nearest.search import ExactNearestMeshSearch
from pose_prior.evaluation.nearest.streaming import StreamingNearestMesh, all_reduce_nearest, merge_nearest

__all__ = [
    "NO_INDEX",
    "ExactNearestMeshSearch",
    "SearchStats",
    "StreamingNearestMesh",
    "all_reduce_nearest",
    "brute_force_nearest",
    "merge_nearest",
    "mesh_distance_matrix",
    "paired_mesh_distance",
]
