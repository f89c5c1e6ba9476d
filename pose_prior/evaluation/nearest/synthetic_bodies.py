"""Posed bodies for nearest-neighbour tests and benchmarks: random plausible poses through a body model.

`posed_bodies` drives the light open body model ("open-light") when its asset is present, else
`ArticulatedStandIn`, a tiny articulated point set with SMPL's body tree: vertices are sampled on
capsules around 21 bones and skinned by linear blend skinning, so poses move groups of vertices
coherently the way a real body model does. Positions in metres, y up, neutral shape, zero global orientation.
"""

from __future__ import annotations

import torch

from pose_prior.rotations import axis_angle_to_matrix

# pelvis + the 21 SMPL-H body joints (AMASS poses[:, 3:66] order)
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
REST_JOINTS = [
    (0.0, 0.0, 0.0), (0.06, -0.09, 0.0), (-0.06, -0.09, 0.0), (0.0, 0.11, -0.02),
    (0.10, -0.47, 0.0), (-0.10, -0.47, 0.0), (0.0, 0.25, 0.0), (0.09, -0.87, -0.04),
    (-0.09, -0.87, -0.04), (0.0, 0.30, 0.01), (0.11, -0.93, 0.10), (-0.11, -0.93, 0.10),
    (0.0, 0.52, -0.02), (0.08, 0.42, -0.01), (-0.08, 0.42, -0.01), (0.0, 0.60, 0.04),
    (0.18, 0.45, -0.02), (-0.18, 0.45, -0.02), (0.44, 0.45, -0.03), (-0.44, 0.45, -0.03),
    (0.70, 0.45, -0.02), (-0.70, 0.45, -0.02),
]
# segment end for each joint's bone (a child joint, or an extra tip for leaves) and capsule radius
_TIPS = {10: (0.11, -0.95, 0.20), 11: (-0.11, -0.95, 0.20), 15: (0.0, 0.78, 0.04),
         20: (0.86, 0.45, -0.02), 21: (-0.86, 0.45, -0.02)}
_CHILD = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16, 14: 17,
          16: 18, 17: 19, 18: 20, 19: 21}
_RADIUS = [0.13, 0.08, 0.08, 0.12, 0.055, 0.055, 0.13, 0.045, 0.045, 0.12, 0.04, 0.04, 0.05,
           0.05, 0.05, 0.09, 0.05, 0.05, 0.04, 0.04, 0.035, 0.035]
# per-joint standard deviation (radians) of the random plausible pose, for joints 1..21
_POSE_STD = [0.35, 0.35, 0.15, 0.3, 0.3, 0.1, 0.15, 0.15, 0.1, 0.05, 0.05, 0.2, 0.15, 0.15, 0.2,
             0.4, 0.4, 0.4, 0.4, 0.2, 0.2]


class ArticulatedStandIn:
    """Linear-blend-skinned point set; `forward(body_pose (B, 63)) -> vertices (B, V, 3)` in metres."""

    def __init__(self, num_vertices: int = 1229, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        joints = torch.tensor(REST_JOINTS, dtype=torch.float64)  # (22, 3)
        starts, ends = [], []
        for j in range(22):
            starts.append(joints[j])
            ends.append(joints[_CHILD[j]] if j in _CHILD else torch.tensor(_TIPS.get(j, REST_JOINTS[j])))
        starts, ends = torch.stack(starts), torch.stack(ends)  # (22, 3)
        radius = torch.tensor(_RADIUS, dtype=torch.float64)
        area = (ends - starts).norm(dim=1).clamp_min(0.05) * radius
        bone = torch.multinomial(area / area.sum(), num_vertices, replacement=True, generator=g)  # (V,)
        t = torch.rand(num_vertices, generator=g, dtype=torch.float64)
        axis = ends[bone] - starts[bone]
        direction = torch.randn(num_vertices, 3, generator=g, dtype=torch.float64)
        direction -= (direction * axis).sum(1, keepdim=True) * axis / axis.pow(2).sum(1, keepdim=True).clamp_min(1e-9)
        direction /= direction.norm(dim=1, keepdim=True)
        points = starts[bone] + t[:, None] * axis + radius[bone, None] * direction  # (V, 3)
        # blend weights: soft assignment by distance to each bone segment
        seg = ends - starts  # (22, 3)
        rel = points[:, None] - starts[None]  # (V, 22, 3)
        s = ((rel * seg).sum(-1) / seg.pow(2).sum(-1).clamp_min(1e-9)).clamp(0, 1)
        dist = (rel - s[..., None] * seg).norm(dim=-1) - radius  # (V, 22)
        weights = torch.softmax(-dist.clamp_min(0) / 0.015, dim=1)
        weights = torch.where(weights > 0.02, weights, torch.zeros_like(weights))
        self.weights = (weights / weights.sum(1, keepdim=True)).float()  # (V, 22)
        self.rest_vertices = points.float()  # (V, 3)
        self.rest_joints = joints.float()  # (22, 3)

    @property
    def num_vertices(self) -> int:
        return self.rest_vertices.shape[0]

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Posed vertices (B, V, 3) for body poses (B, 63), zero global orientation."""
        b = body_pose.shape[0]
        local = axis_angle_to_matrix(body_pose.reshape(b, 21, 3).float())  # (B, 21, 3, 3)
        eye = torch.eye(3).expand(b, 1, 3, 3)
        local = torch.cat([eye, local], dim=1)  # (B, 22, 3, 3)
        rot, pos = [local[:, 0]], [self.rest_joints[0].expand(b, 3)]
        for j in range(1, 22):
            p = PARENTS[j]
            rot.append(rot[p] @ local[:, j])
            pos.append(pos[p] + (rot[p] @ (self.rest_joints[j] - self.rest_joints[p])[:, None])[..., 0])
        rot, pos = torch.stack(rot, 1), torch.stack(pos, 1)  # (B, 22, 3, 3), (B, 22, 3)
        rel = self.rest_vertices[None, None] - self.rest_joints[None, :, None]  # (1, 22, V, 3)
        moved = torch.einsum("bjxy,bjvy->bjvx", rot, rel.expand(b, -1, -1, -1)) + pos[:, :, None]
        return torch.einsum("vj,bjvx->bvx", self.weights, moved)  # (B, V, 3)

    __call__ = forward


def random_plausible_body_pose(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random plausible body poses (n, 63): per-joint Gaussian axis-angle, knees/elbows bend one way."""
    aa = torch.randn(n, 21, 3, generator=generator) * torch.tensor(_POSE_STD)[None, :, None]
    knees = torch.tensor([3, 4])
    aa[:, knees, 0] = aa[:, knees, 0].abs() * 2.0  # knees flex forward only
    aa[:, knees, 1:] *= 0.1
    elbows = torch.tensor([17, 18])
    aa[:, elbows, 1] = aa[:, elbows, 1].abs() * 2.0 * torch.tensor([1.0, -1.0])
    return aa.reshape(n, 63)


def load_pose_to_vertices(name: str = "open-light"):
    """A callable body_pose (B, 63) -> vertices (B, V, 3): the named open model, else the stand-in."""
    try:
        from pose_prior.body_model import load_body_model

        model = load_body_model(name)
    except (ImportError, FileNotFoundError):
        return ArticulatedStandIn()

    def forward(body_pose: torch.Tensor) -> torch.Tensor:
        return model(body_pose).vertices.reshape(body_pose.shape[0], -1, 3).float()

    forward.name = name
    return forward


@torch.no_grad()
def posed_bodies(n: int, seed: int, pose_to_vertices=None, batch: int = 4096) -> torch.Tensor:
    """n bodies (n, V, 3) in metres from random plausible poses (deterministic for a seed)."""
    pose_to_vertices = pose_to_vertices or load_pose_to_vertices()
    g = torch.Generator().manual_seed(seed)
    poses = random_plausible_body_pose(n, g)
    return torch.cat([pose_to_vertices(poses[i:i + batch]) for i in range(0, n, batch)])
