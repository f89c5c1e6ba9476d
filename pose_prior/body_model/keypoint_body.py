"""Keypoints of a posed body without skinning the whole mesh (the inner loop of keypoint fitting)."""

from __future__ import annotations

from typing import Optional

import torch
from smplx.lbs import batch_rigid_transform
from torch import nn

from pose_prior.body_model.keypoints import KeypointMap
from pose_prior.body_model.model import NUM_BODY_JOINTS


class KeypointBody(nn.Module):
    """Keypoints (B, K, 3) of a BodyModel without skinning the whole mesh (unavailable ones at `transl`).

    Computes the kinematic chain and only the landmark vertices the KeypointMap reads (with pose blend
    shapes if the model has them). 63-d SMPL-H body pose; shape: neutral (betas None), or betas (B, k),
    k <= the model's shape components, through the shape directions of the landmark vertices (shapedirs
    restricted to the columns read) and of the joints (J_regressor @ shapedirs): the same linear maps as
    the full forward pass.
    """

    def __init__(self, body_model: nn.Module, keypoint_map: KeypointMap) -> None:
        super().__init__()
        reg = keypoint_map.vertex_regressor.to(body_model.dtype)  # (K, V)
        cols = torch.nonzero(reg.abs().sum(0) > 0)[:, 0]  # (S,)
        self.layout = keypoint_map.layout
        self.register_buffer("sub_regressor", reg[:, cols].contiguous())  # (K, S)
        self.register_buffer("joint_ids", keypoint_map.joint_ids.clone())
        self.register_buffer("available", keypoint_map.available.clone())
        self.register_buffer("approximate", keypoint_map.approximate.clone())
        num_posed = 1 + NUM_BODY_JOINTS
        self.register_buffer("weights", body_model.body_weights[cols].contiguous())  # (S, 22)
        self.register_buffer("rest_vertices", body_model.v_template[cols].contiguous())  # (S, 3)
        self.register_buffer("rest_joints", body_model.rest_joints[:num_posed].contiguous())  # (22, 3)
        self.register_buffer("rest_all", body_model.rest_joints.contiguous())  # (J, 3)
        self.register_buffer("parents", body_model.parents[:num_posed].clone())
        self.register_buffer("ancestor", body_model.body_ancestor.clone())  # (J,)
        # shape directions (k = the model's shape components): landmark vertices and joints
        shapedirs = body_model.shapedirs  # (V, 3, k)
        self.num_betas = int(shapedirs.shape[-1])
        self.register_buffer("vertex_shapedirs", shapedirs[cols].contiguous())  # (S, 3, k)
        joint_dirs = torch.einsum("jv,vck->jck", body_model.J_regressor, shapedirs)  # (J, 3, k)
        self.register_buffer("joint_shapedirs", joint_dirs.contiguous())
        self.has_posedirs = bool(body_model.has_posedirs)
        if self.has_posedirs:
            pd = body_model.posedirs[: 9 * NUM_BODY_JOINTS].reshape(9 * NUM_BODY_JOINTS, -1, 3)
            self.register_buffer("posedirs", pd[:, cols].reshape(9 * NUM_BODY_JOINTS, -1).contiguous())
        self.num_keypoints = int(reg.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.rest_vertices.dtype

    def _shaped(self, betas: Optional[torch.Tensor], B: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest landmark vertices (1 or B, S, 3) and rest joints (1 or B, J, 3) for `betas` (B, k) or None."""
        if betas is None:
            return self.rest_vertices[None], self.rest_all[None]
        betas = betas.to(self.dtype)
        k = betas.shape[-1]
        if betas.ndim != 2 or betas.shape[0] != B or k > self.num_betas:
            raise ValueError(f"betas must be ({B}, k <= {self.num_betas}), got {tuple(betas.shape)}")
        verts = self.rest_vertices + torch.einsum("sck,bk->bsc", self.vertex_shapedirs[..., :k], betas)
        joints = self.rest_all + torch.einsum("jck,bk->bjc", self.joint_shapedirs[..., :k], betas)
        return verts, joints

    def forward(self, rot_root: torch.Tensor, rot_body: torch.Tensor, transl: torch.Tensor,
                betas: Optional[torch.Tensor] = None) -> torch.Tensor:
        """rot_root (B, 3, 3), rot_body (B, 21, 3, 3), transl (B, 3), betas (B, k) or None -> keypoints (B, K, 3)."""
        B = rot_body.shape[0]
        rots = torch.cat([rot_root[:, None], rot_body], 1).to(self.dtype)  # (B, 22, 3, 3)
        v, rest_all = self._shaped(betas, B)  # (1|B, S, 3), (1|B, J, 3)
        rest = rest_all[:, : self.rest_joints.shape[0]].expand(B, -1, -1).contiguous()
        _, transforms = batch_rigid_transform(rots, rest, self.parents, dtype=self.dtype)
        top = transforms[:, :, :3, :]  # (B, 22, 3, 4)
        if self.has_posedirs:
            eye = torch.eye(3, dtype=self.dtype, device=rots.device)
            feature = (rots[:, 1:] - eye).reshape(B, -1)  # (B, 189)
            v = v + (feature @ self.posedirs).reshape(B, -1, 3)
        blended = torch.einsum("sp,bpij->bsij", self.weights, top)  # (B, S, 3, 4)
        verts = (blended[..., :3] @ v[..., None].expand(B, -1, -1, -1))[..., 0] + blended[..., 3]  # (B, S, 3)
        from_vertices = torch.einsum("ks,bsc->bkc", self.sub_regressor, verts)  # (B, K, 3)
        ids = self.joint_ids.clamp(min=0)
        anc = self.ancestor[ids]  # (K,)
        rest_homo = torch.cat([rest_all, torch.ones_like(rest_all[..., :1])], -1)  # (1|B, J, 4)
        rest_sel = rest_homo[:, ids]  # (1|B, K, 4): joint j moves rigidly with its body ancestor: T_anc [rest_j, 1]
        from_joints = (top[:, anc] @ rest_sel[..., None])[..., 0]  # (B, K, 3)
        out = torch.where((self.joint_ids >= 0)[None, :, None], from_joints, from_vertices)
        out = out * self.available[None, :, None].to(out.dtype)
        # unavailable keypoints sit at the translation (finite projection; their confidence is forced to 0)
        return out + transl[:, None, :].to(out.dtype)

    def rooted(self, rot_body: torch.Tensor, betas: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints (B, K, 3) under the identity root rotation and no translation, and the root joint
        (1|B, 3) the root rotation turns them about. With `place` they give `forward`'s keypoints for any root
        rotation and translation at the cost of one rotation: one kinematic chain per pose for many cameras
        (scoring a pool of starts against every fit row)."""
        B = rot_body.shape[0]
        eye = torch.eye(3, dtype=self.dtype, device=rot_body.device).expand(B, 3, 3)
        pts = self.forward(eye, rot_body, torch.zeros(B, 3, dtype=self.dtype, device=rot_body.device), betas)
        return pts, self._shaped(betas, B)[1][:, 0]

    def place(self, rooted: torch.Tensor, root_joint: torch.Tensor, rot_root: torch.Tensor,
              transl: torch.Tensor) -> torch.Tensor:
        """`forward`'s keypoints (B, K, 3) from `rooted`'s keypoints (B, K, 3) and root joint (1|B, 3), for
        rot_root (B, 3, 3) and transl (B, 3): the root rotation turns the whole body about the root joint."""
        j0 = root_joint[:, None].to(rooted)  # (1|B, 1, 3)
        out = torch.einsum("bij,bkj->bki", rot_root.to(rooted), rooted - j0) + j0
        out = out * self.available[None, :, None].to(out.dtype)
        return out + transl[:, None, :].to(out.dtype)
