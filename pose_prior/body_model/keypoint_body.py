"""Keypoints of a posed body without skinning the whole mesh (the inner loop of keypoint fitting)."""

from __future__ import annotations

import torch
from smplx.lbs import batch_rigid_transform
from torch import nn

from pose_prior.body_model.keypoints import KeypointMap
from pose_prior.body_model.model import NUM_BODY_JOINTS


class KeypointBody(nn.Module):
    """Keypoints (B, K, 3) of a BodyModel without skinning the whole mesh (unavailable ones at `transl`).

    Computes the kinematic chain and only the landmark vertices the KeypointMap reads (with pose blend
    shapes if the model has them). Neutral shape (betas = 0), 63-d SMPL-H body pose.
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
        self.has_posedirs = bool(body_model.has_posedirs)
        if self.has_posedirs:
            pd = body_model.posedirs[: 9 * NUM_BODY_JOINTS].reshape(9 * NUM_BODY_JOINTS, -1, 3)
            self.register_buffer("posedirs", pd[:, cols].reshape(9 * NUM_BODY_JOINTS, -1).contiguous())
        self.num_keypoints = int(reg.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.rest_vertices.dtype

    def forward(self, rot_root: torch.Tensor, rot_body: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """rot_root (B, 3, 3), rot_body (B, 21, 3, 3), transl (B, 3) -> keypoints (B, K, 3)."""
        B = rot_body.shape[0]
        rots = torch.cat([rot_root[:, None], rot_body], 1).to(self.dtype)  # (B, 22, 3, 3)
        rest = self.rest_joints[None].expand(B, -1, -1).contiguous()
        _, transforms = batch_rigid_transform(rots, rest, self.parents, dtype=self.dtype)
        top = transforms[:, :, :3, :]  # (B, 22, 3, 4)
        v = self.rest_vertices[None]  # (1, S, 3)
        if self.has_posedirs:
            eye = torch.eye(3, dtype=self.dtype, device=rots.device)
            feature = (rots[:, 1:] - eye).reshape(B, -1)  # (B, 189)
            v = v + (feature @ self.posedirs).reshape(B, -1, 3)
        blended = torch.einsum("sp,bpij->bsij", self.weights, top)  # (B, S, 3, 4)
        verts = (blended[..., :3] @ v[..., None].expand(B, -1, -1, -1))[..., 0] + blended[..., 3]  # (B, S, 3)
        from_vertices = torch.einsum("ks,bsc->bkc", self.sub_regressor, verts)  # (B, K, 3)
        ids = self.joint_ids.clamp(min=0)
        anc = self.ancestor[ids]  # (K,)
        rest_homo = torch.cat([self.rest_all, torch.ones_like(self.rest_all[:, :1])], 1)  # (J, 4)
        rest_sel = rest_homo[ids]  # (K, 4): joint j moves rigidly with its body ancestor: T_anc [rest_j, 1]
        from_joints = (top[:, anc] @ rest_sel[None, :, :, None])[..., 0]  # (B, K, 3)
        out = torch.where((self.joint_ids >= 0)[None, :, None], from_joints, from_vertices)
        out = out * self.available[None, :, None].to(out.dtype)
        # unavailable keypoints sit at the translation (finite projection; their confidence is forced to 0)
        return out + transl[:, None, :].to(out.dtype)
