"""BodyModel: a cheap, batched SMPL / SMPL-H forward pass (linear blend skinning) over smplx's buffers."""

from __future__ import annotations

from typing import NamedTuple

import torch
from smplx.lbs import batch_rigid_transform
from torch import nn

from pose_prior.rotations import axis_angle_to_matrix

NUM_BODY_JOINTS = 21  # SMPL-H body joints driven by a 63-d pose (AMASS poses[:, 3:66])
NUM_JOINTS = {"smpl": 24, "smplh": 52}


class BodyOutput(NamedTuple):
    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, J, 3) kinematic joints only (24 SMPL, 52 SMPL-H)


class BodyModel(nn.Module):
    """SMPL or SMPL-H driven by a body pose; shape, orientation and translation default to zero.

    Built from the buffers of a loaded smplx model (see `load_body_model`). The forward pass is
    smplx's linear blend skinning, reorganised so that evaluation over millions of bodies is cheap:
    joints whose rotation is always the identity (the hands under a 63-d pose) share their parent's
    transform, so their skinning weights are merged into the wrist; zero pose blend shapes are skipped;
    with neutral shape the skinning is a single matmul against precomputed weighted rest vertices.
    """

    def __init__(
        self,
        model_type: str,
        v_template: torch.Tensor,  # (V, 3)
        shapedirs: torch.Tensor,  # (V, 3, K)
        posedirs: torch.Tensor,  # (9 * (J - 1), V * 3), smplx's layout
        J_regressor: torch.Tensor,  # (J, V)
        parents: torch.Tensor,  # (J,) long, parents[0] = -1
        lbs_weights: torch.Tensor,  # (V, J)
        faces: torch.Tensor,  # (F, 3)
        vertex_ids: dict[str, int] | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        if model_type not in NUM_JOINTS:
            raise ValueError(f"model_type must be one of {sorted(NUM_JOINTS)}, got {model_type!r}")
        num_joints = NUM_JOINTS[model_type]
        if J_regressor.shape[0] < num_joints or lbs_weights.shape[1] != J_regressor.shape[0]:
            raise ValueError(
                f"{name or model_type}: expected {num_joints} joints, got J_regressor {tuple(J_regressor.shape)} "
                f"and weights {tuple(lbs_weights.shape)}"
            )
        self.model_type = model_type
        self.name = name
        self.num_joints = num_joints
        self.num_vertices = int(v_template.shape[0])
        self.num_betas = int(shapedirs.shape[-1])
        self.vertex_ids = dict(vertex_ids or {})
        dtype = v_template.dtype

        self.register_buffer("faces", faces.to(torch.long).contiguous())
        self.register_buffer("v_template", v_template.contiguous())
        self.register_buffer("shapedirs", shapedirs.contiguous())
        self.register_buffer("J_regressor", J_regressor[:num_joints].contiguous())
        self.register_buffer("parents", parents[:num_joints].to(torch.long).contiguous())
        self.register_buffer("lbs_weights", lbs_weights[:, :num_joints].contiguous())
        # Pose blend shapes only when the model has any (the open model has none).
        self.has_posedirs = bool(posedirs.numel() and posedirs.abs().max() > 0)
        if self.has_posedirs:
            self.register_buffer("posedirs", posedirs.contiguous())
        else:
            self.posedirs = None

        # A 63-d pose drives the first 22 joints; the others (hands) keep their rest rotation and
        # therefore their wrist's skinning transform: merge their weights into that ancestor.
        num_posed = 1 + NUM_BODY_JOINTS
        parents_list = self.parents.tolist()
        ancestor = []
        for j in range(num_joints):
            a = j
            while a >= num_posed:
                a = parents_list[a]
            ancestor.append(a)
        self.register_buffer("_body_ancestor", torch.tensor(ancestor, dtype=torch.long), persistent=False)
        merge = torch.zeros(num_joints, num_posed, dtype=dtype)
        merge[torch.arange(num_joints), self._body_ancestor] = 1.0
        self.register_buffer("_body_weights", self.lbs_weights @ merge, persistent=False)  # (V, 22)
        self._refresh_rest()

    # -- cached rest quantities (neutral shape) ---------------------------------------------------------
    def _refresh_rest(self) -> None:
        rest_joints = self.J_regressor @ self.v_template  # (J, 3)
        self.register_buffer("_rest_joints", rest_joints, persistent=False)
        # Weighted homogeneous rest vertices: vertices = (V, 22*4) @ (B, 22*4, 3) for neutral shape.
        homo = torch.cat([self.v_template, torch.ones_like(self.v_template[:, :1])], dim=1)  # (V, 4)
        weighted = (self._body_weights[:, :, None] * homo[:, None, :]).reshape(self.num_vertices, -1)
        self.register_buffer("_weighted_rest", weighted.contiguous(), persistent=False)  # (V, 88)

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    @property
    def rest_joints(self) -> torch.Tensor:
        """(J, 3) joints of the neutral-shape rest pose."""
        return self._rest_joints

    @property
    def body_weights(self) -> torch.Tensor:
        """(V, 22) skinning weights on the root and the 21 body joints (hand weights merged into the wrists)."""
        return self._body_weights

    @property
    def body_ancestor(self) -> torch.Tensor:
        """(J,) long: the posed joint (root or body joint) each joint moves rigidly with under a 63-d pose."""
        return self._body_ancestor

    @property
    def device(self) -> torch.device:
        return self.v_template.device

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, model_type={self.model_type}, vertices={self.num_vertices}, "
            f"joints={self.num_joints}, betas={self.num_betas}, posedirs={self.has_posedirs}"
        )

    # -- forward ----------------------------------------------------------------------------------------
    def _rotations(self, pose: torch.Tensor, num: int, what: str) -> torch.Tensor:
        """(B, 3*num) axis-angle or (B, num, 3, 3) matrices -> (B, num, 3, 3)."""
        pose = pose.to(self.dtype)
        if pose.ndim == 2 and pose.shape[1] == 3 * num:
            return axis_angle_to_matrix(pose.reshape(pose.shape[0], num, 3))
        if pose.ndim == 4 and pose.shape[1:] == (num, 3, 3):
            return pose
        if pose.ndim == 3 and num == 1 and pose.shape[1:] == (3, 3):
            return pose[:, None]
        raise ValueError(f"{what}: expected (B, {3 * num}) axis-angle or (B, {num}, 3, 3), got {tuple(pose.shape)}")

    def forward(
        self,
        body_pose: torch.Tensor,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Posed vertices (B, V, 3) and kinematic joints (B, J, 3).

        body_pose: (B, 63) SMPL-H body pose (or (B, 69) for SMPL, hands included), or the same as
        rotation matrices (B, 21|23, 3, 3). betas (B, K), global_orient (B, 3) or (B, 3, 3), transl (B, 3).
        Inputs are cast to the model's dtype. `vertices` may be a non-contiguous view (a copy of
        B x V x 3 costs as much as the skinning): use `.reshape`, not `.view`.
        """
        batch = body_pose.shape[0]
        num_pose_joints = body_pose.shape[1] // 3 if body_pose.ndim == 2 else body_pose.shape[1]
        if num_pose_joints == NUM_BODY_JOINTS or (self.model_type == "smpl" and num_pose_joints == 23):
            rot_body = self._rotations(body_pose, num_pose_joints, "body_pose")
        else:
            allowed = "(B, 63) or (B, 69)" if self.model_type == "smpl" else "(B, 63)"
            raise ValueError(f"body_pose: expected {allowed} axis-angle, got {tuple(body_pose.shape)}")
        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        if global_orient is None:
            rot_root = eye.expand(batch, 1, 3, 3)
        else:
            rot_root = self._rotations(global_orient, 1, "global_orient")
        rots = torch.cat([rot_root, rot_body], dim=1)  # (B, P, 3, 3), P = 22 or 24
        num_posed = rots.shape[1]
        full = num_posed == self.num_joints  # SMPL driven with its hands

        if betas is None:
            v_shaped = self.v_template[None]  # (1, V, 3)
            rest_joints = self._rest_joints[None].expand(batch, -1, -1)  # (B, J, 3)
        else:
            betas = betas.to(self.dtype)
            k = betas.shape[1]
            if k > self.num_betas:
                raise ValueError(f"betas: model has {self.num_betas} shape components, got {k}")
            dirs = self.shapedirs[..., :k].reshape(-1, k)  # (V*3, k)
            v_shaped = self.v_template + (betas @ dirs.T).reshape(batch, -1, 3)
            rest_joints = torch.einsum("jv,bvc->bjc", self.J_regressor, v_shaped)

        # Transforms of the posed joints: (B, P, 4, 4), smplx's chain.
        _, transforms = batch_rigid_transform(
            rots, rest_joints[:, :num_posed].contiguous(), self.parents[:num_posed], dtype=self.dtype
        )
        top = transforms[:, :, :3, :]  # (B, P, 3, 4)

        # Joints: every joint moves rigidly with its transform (its body ancestor's for unposed joints).
        ancestor = torch.arange(self.num_joints, device=self.device) if full else self._body_ancestor
        rest_homo = torch.cat([rest_joints, torch.ones_like(rest_joints[..., :1])], dim=-1)  # (B, J, 4)
        joints = (top[:, ancestor] @ rest_homo[..., None])[..., 0]  # (B, J, 3)

        pose_offsets = None
        if self.has_posedirs:
            feature = (rots[:, 1:] - eye).reshape(batch, -1)  # (B, 9 * (P - 1))
            pose_offsets = (feature @ self.posedirs[: feature.shape[1]]).reshape(batch, -1, 3)

        if betas is None and pose_offsets is None and not full:
            # Neutral shape, no pose blend shapes: one matmul over precomputed weighted rest vertices.
            # One GEMM (V, 4P) @ (4P, B*3), far faster than a batched matmul with 3 output columns.
            rhs = top.permute(1, 3, 0, 2).reshape(-1, batch * 3)  # (P*4, B*3)
            vertices = (self._weighted_rest @ rhs).reshape(-1, batch, 3).transpose(0, 1)  # (B, V, 3)
        else:
            v_posed = v_shaped if pose_offsets is None else v_shaped + pose_offsets
            weights = self.lbs_weights if full else self._body_weights  # (V, P)
            # Per-vertex blended transforms with one GEMM (V, P) @ (P, B*12), applied in (V, B) layout.
            blended = (weights @ top.transpose(0, 1).reshape(num_posed, -1)).view(-1, batch, 3, 4)
            v = v_posed.transpose(0, 1)[:, :, None, :]  # (V, B or 1, 1, 3)
            vertices = blended[..., 3] + blended[..., 0] * v[..., 0] + blended[..., 1] * v[..., 1]
            vertices = (vertices + blended[..., 2] * v[..., 2]).transpose(0, 1)  # (B, V, 3) view

        if transl is not None:
            transl = transl.to(self.dtype)[:, None]
            vertices = vertices + transl
            joints = joints + transl
        return BodyOutput(vertices=vertices, joints=joints)
