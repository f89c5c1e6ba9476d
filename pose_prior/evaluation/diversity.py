"""Diversity and novelty of generated poses: APD (average pairwise distance) and dNN (distance to the
nearest training pose), as the generation benchmarks of DPoser-X and NRDF define them.

- APD: mean over all pairs (i != j) of the mean per-joint Euclidean distance between the joints of
  samples i and j (DPoser's `average_pairwise_distance`, NRDF's `calculate_apd`); both conventions use
  joints 0-21 of the neutral body (beta = 0). The caller converts to cm.
- dNN: for each sample, the distance to its nearest training pose, the distance of two poses being the
  sum over the 21 body joints of the geodesic angle 2 acos|q1 . q2| between their rotations (unit
  quaternions). NRDF's code averages acos|q1 . q2| over the joints instead, i.e. 1/42 of this value.

Both are float64 and chunked: APD's pair matrix and dNN's sample x train matrix are built in blocks.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

NUM_BODY_JOINTS = 21


def apd(joints: torch.Tensor | np.ndarray, chunk: int = 128) -> float:
    """(N, J, 3) joint positions -> mean over ordered pairs i != j of mean_j ||x_ij - x_kj|| (input units)."""
    x = torch.as_tensor(joints).detach().to(torch.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, J, 3) joints, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < 2:
        raise ValueError("APD needs at least 2 samples")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        block = x[start:start + chunk]  # (c, J, 3)
        per_joint = (block[:, None] - x[None]).norm(dim=-1)  # (c, N, J); the diagonal pairs are 0
        total += per_joint.mean(-1).sum()
    return float(total / (n * (n - 1)))


def body_quaternions(body_pose: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, 63) axis-angle -> (N, 21, 4) unit quaternions, float64 (sign irrelevant: dNN uses |q1 . q2|)."""
    pose = torch.as_tensor(body_pose).detach().to(torch.float64)
    if pose.ndim != 2 or pose.shape[1] != 3 * NUM_BODY_JOINTS:
        raise ValueError(f"expected (N, 63) body poses, got shape {tuple(pose.shape)}")
    return roma.rotvec_to_unitquat(pose.reshape(pose.shape[0], NUM_BODY_JOINTS, 3))


def quaternion_pose_distance(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """(S, 21, 4), (T, 21, 4) -> (S, T): sum over joints of 2 acos|q1 . q2| (radians)."""
    out = torch.zeros(q1.shape[0], q2.shape[0], dtype=q1.dtype, device=q1.device)
    for j in range(q1.shape[1]):  # one joint at a time: memory O(S x T), not O(S x T x 21)
        dot = (q1[:, j] @ q2[:, j].T).abs_().clamp_(max=1.0)
        out += 2.0 * torch.acos(dot)
    return out


def dnn(samples: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray, chunk: int = 1024,
        train_chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact nearest training pose of each sample under `quaternion_pose_distance`.

    samples (S, 63), train (T, 63) axis-angle (train may be a numpy memmap: it is read `train_chunk`
    rows at a time) -> (distances (S,) float64 radians, indices (S,) int64 into train). Cost S x T x 21.
    """
    q = body_quaternions(samples)
    best = torch.full((q.shape[0],), float("inf"), dtype=torch.float64)
    arg = torch.zeros(q.shape[0], dtype=torch.long)
    num_train = len(train)
    for t0 in range(0, num_train, train_chunk):
        qt = body_quaternions(np.array(train[t0:t0 + train_chunk]) if isinstance(train, np.ndarray)
                              else train[t0:t0 + train_chunk])
        for s0 in range(0, q.shape[0], chunk):
            d = quaternion_pose_distance(q[s0:s0 + chunk], qt)  # (c, t)
            val, idx = d.min(1)
            better = val < best[s0:s0 + chunk]  # strict: ties keep the lowest train index
            best[s0:s0 + chunk] = torch.where(better, val, best[s0:s0 + chunk])
            arg[s0:s0 + chunk] = torch.where(better, idx + t0, arg[s0:s0 + chunk])
    return best, arg
