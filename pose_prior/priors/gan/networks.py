"""Generator and discriminator of the adversarial pose prior (paper Sec. 3.2) and their LSGAN losses.

- `PoseGenerator`: VPoser's decoder shape, as in the authors' code: latent -> 512 -> 512 -> 21 x 6D ->
  rotation matrices. Layer names (`bodyprior_dec_fc1/fc2/out`) are the authors' (and VPoser v1's), so
  their generator state dicts load unchanged.
- `PoseDiscriminator`: HMR's discriminator with LeakyReLU(0.2): shared per-joint features over each
  joint's 9 rotation-matrix entries (9 -> 32 -> 32, the 1x1 convolutions written as Linear layers on
  (B, J, 9)), one linear head per joint and a whole-pose MLP (J*32 -> 64 -> 64 -> 1 in the authors'
  public ganS config; their code's default width, and HMR's, is 1024). On a tensor the heads and the
  MLP's first layer run as ONE matrix product (`first_layer`); training passes `prepare`'s result
  instead, which runs the per-joint layers, heads and first layer as one autograd Function with a
  hand-written backward (`fused.trunk`, `step_loss`), prepared once for the authors' 10 discriminator
  steps on the same poses. The MLP's first weight is stored feature-major
  (f * J + j), the order of the authors' `comm_features.view(N, -1)` on (N, 32, J), so their weights
  map one to one (`discriminator_state_from_authors`).
The least-squares losses are in `losses.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from pose_prior.priors.gan.dropout import FastDropout
from pose_prior.priors.gan.fused import PreparedPoses, discriminator_step_loss, trunk
from pose_prior.priors.gan.settings import GanSettings
from pose_prior.rotations import matrices_to_body_pose, sixd_to_matrix


class PoseGenerator(nn.Module):
    """Latent (B, latent_dim) -> body-pose rotation matrices (B, num_joints, 3, 3)."""

    def __init__(
        self,
        latent_dim: int = GanSettings.latent_dim,
        hidden: int = GanSettings.gen_hidden,
        num_joints: int = 21,
        dropout: float = GanSettings.gen_dropout,
        slope: float = GanSettings.leaky_slope,
    ) -> None:
        super().__init__()
        self.latent_dim, self.hidden, self.num_joints = int(latent_dim), int(hidden), int(num_joints)
        self.dropout_p, self.slope = float(dropout), float(slope)
        self.bodyprior_dec_fc1 = nn.Linear(self.latent_dim, self.hidden)
        self.dropout = FastDropout(self.dropout_p)
        self.bodyprior_dec_fc2 = nn.Linear(self.hidden, self.hidden)
        self.bodyprior_dec_out = nn.Linear(self.hidden, self.num_joints * 6)

    def arch_kwargs(self) -> dict[str, int | float]:
        """Constructor arguments that rebuild this architecture (stored in prior.pt)."""
        return {
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "num_joints": self.num_joints,
            "dropout": self.dropout_p,
            "slope": self.slope,
        }

    def sixd(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> raw 6D output (B, J, 6)."""
        x = F.leaky_relu(self.bodyprior_dec_fc1(z), self.slope)  # (B, H)
        x = self.dropout(x)
        x = F.leaky_relu(self.bodyprior_dec_fc2(x), self.slope)  # (B, H)
        return self.bodyprior_dec_out(x).reshape(z.shape[0], self.num_joints, 6)  # (B, J, 6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, J, 3, 3) rotation matrices."""
        return sixd_to_matrix(self.sixd(z))

    def matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, J, 3, 3) rotation matrices (same as forward)."""
        return self(z)

    def body_pose(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, 3*J) axis-angle body pose (SMPL-H order, 63 numbers for 21 joints)."""
        return matrices_to_body_pose(self(z))


class PoseDiscriminator(nn.Module):
    """Rotation matrices (B, J, 3, 3) -> logits (B, J + 1): J per-joint scores, then the whole-pose score."""

    def __init__(
        self,
        num_joints: int = 21,
        joint_features: int = GanSettings.disc_joint_features,
        hidden: int = GanSettings.disc_hidden,
        num_layers: int = 2,
        slope: float = GanSettings.leaky_slope,
    ) -> None:
        super().__init__()
        self.num_joints, self.joint_features = int(num_joints), int(joint_features)
        self.hidden, self.num_layers, self.slope = int(hidden), int(num_layers), float(slope)
        J, C = self.num_joints, self.joint_features
        # Shared per-joint features: the HMR 1x1 convolutions, as Linear layers over (B, J, 9).
        self.joint_fc1 = nn.Linear(9, C)
        self.joint_fc2 = nn.Linear(C, C)
        # J per-joint heads as one batched op: out[b, j] = <feat[b, j], head_weight[j]> + head_bias[j].
        self.head_weight = nn.Parameter(torch.empty(J, C))
        self.head_bias = nn.Parameter(torch.empty(J))
        bound = 1.0 / math.sqrt(C)  # nn.Linear(C, 1)'s default initialisation, per head
        nn.init.uniform_(self.head_weight, -bound, bound)
        nn.init.uniform_(self.head_bias, -bound, bound)
        # Whole-pose MLP over the flattened features.
        layers: list[nn.Module] = []
        width = J * C
        for _ in range(self.num_layers):
            layers += [nn.Linear(width, self.hidden), nn.LeakyReLU(self.slope)]
            width = self.hidden
        layers.append(nn.Linear(width, 1))
        self.pose_mlp = nn.Sequential(*layers)

    def arch_kwargs(self) -> dict[str, int | float]:
        return {
            "num_joints": self.num_joints,
            "joint_features": self.joint_features,
            "hidden": self.hidden,
            "num_layers": self.num_layers,
            "slope": self.slope,
        }

    def joint_features_of(self, rotmats: torch.Tensor) -> torch.Tensor:
        """(B, J, 3, 3) -> shared per-joint features (B, J, C)."""
        x = rotmats.reshape(rotmats.shape[0], self.num_joints, 9)  # (B, J, 9)
        x = F.leaky_relu(self.joint_fc1(x), self.slope)  # (B, J, C)
        return F.leaky_relu(self.joint_fc2(x), self.slope)  # (B, J, C)

    def first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The J per-joint heads and the whole-pose MLP's first layer as ONE linear map over the
        joint-major flattened features (index j*C + c): weight (J + H, J*C), bias (J + H,).

        Rows 0..J-1 hold head j's weights in block j (zeros elsewhere, masked by the identity, so
        the off-block entries never receive gradient); rows J.. are the MLP's first layer with its
        columns permuted from the stored feature-major order (c*J + j) to joint-major. One GEMM
        then replaces the batched head product, the feature transpose and the sum of the two
        feature gradients (bench/train_throughput.py)."""
        J, C = self.num_joints, self.joint_features
        eye = torch.eye(J, dtype=self.head_weight.dtype, device=self.head_weight.device)
        heads = (eye[:, :, None] * self.head_weight[None, :, :]).reshape(J, J * C)  # (J, J*C)
        fc = self.pose_mlp[0]
        mlp0 = fc.weight.reshape(-1, C, J).transpose(1, 2).reshape(-1, J * C)  # (H, J*C) joint-major
        return torch.cat([heads, mlp0], 0), torch.cat([self.head_bias, fc.bias], 0)

    def prepare(self, rotmats: torch.Tensor, reuse: PreparedPoses | None = None) -> PreparedPoses:
        """(N, J, 3, 3) -> an input that several forwards can reuse (built once); `reuse`: an earlier
        prepared input whose buffers it may take over (see `PreparedPoses`)."""
        return PreparedPoses(rotmats, self.num_joints, self.joint_features, reuse=reuse)

    def _trunk_params(self) -> tuple[torch.Tensor, ...]:
        fc0 = self.pose_mlp[0]
        return (self.joint_fc1.weight, self.joint_fc1.bias, self.joint_fc2.weight, self.joint_fc2.bias,
                self.head_weight, self.head_bias, fc0.weight, fc0.bias)

    def forward(self, rotmats: torch.Tensor | PreparedPoses) -> torch.Tensor:
        """(N, J, 3, 3) rotation matrices, or `prepare`'s result -> logits (N, J + 1).

        A prepared input (training) runs the hand-written trunk (`fused.trunk`); a tensor runs the plain
        formulation (autograd), whose outputs stay bitwise those of earlier versions (stored checkpoints'
        outputs are compared exactly). The two agree to float rounding (test_fused_discriminator.py)."""
        if isinstance(rotmats, PreparedPoses):
            per_joint, hidden = trunk(rotmats, self.slope, *self._trunk_params())  # (N, J), (N, H)
        else:
            B, J = rotmats.shape[0], self.num_joints
            feat = self.joint_features_of(rotmats).reshape(B, J * self.joint_features)  # (B, J*C) joint-major
            weight, bias = self.first_layer()
            per_joint, hidden = F.linear(feat, weight, bias).split([J, weight.shape[0] - J], dim=1)  # (B, J), (B, H)
        whole = self.pose_mlp[2:](self.pose_mlp[1](hidden))  # (N, 1)
        return torch.cat([per_joint, whole], dim=1)  # (N, J + 1)

    def step_loss(self, prep: PreparedPoses, num_real: int, joint_weight: float, pose_weight: float
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`losses.discriminator_loss` of this network on `prep` (first num_real poses real, the rest fake),
        with every gradient written out (`fused.discriminator_step_loss`) -> (loss, detached logits
        (N, J + 1), unweighted parts)."""
        tail = [t for m in self.pose_mlp[2:] if isinstance(m, nn.Linear) for t in (m.weight, m.bias)]
        return discriminator_step_loss(prep, num_real, self.slope, joint_weight, pose_weight,
                                       self._trunk_params(), tail)


def discriminator_param_count(
    num_joints: int = 21,
    joint_features: int = GanSettings.disc_joint_features,
    hidden: int = GanSettings.disc_hidden,
    num_layers: int = 2,
) -> int:
    """Parameter count of `PoseDiscriminator` from the architecture arithmetic."""
    J, C, H = num_joints, joint_features, hidden
    shared = (9 * C + C) + (C * C + C)
    heads = J * (C + 1)
    mlp = (J * C * H + H) + (num_layers - 1) * (H * H + H) + (H + 1)
    return shared + heads + mlp


def discriminator_state_from_authors(state: Mapping[str, torch.Tensor], num_joints: int = 21) -> dict[str, torch.Tensor]:
    """Map the authors' `Discriminator` state dict (Conv2d 1x1 + ModuleList heads) onto `PoseDiscriminator`."""
    out: dict[str, torch.Tensor] = {
        "joint_fc1.weight": state["comm_conv.0.weight"].reshape(state["comm_conv.0.weight"].shape[:2]),
        "joint_fc1.bias": state["comm_conv.0.bias"],
        "joint_fc2.weight": state["comm_conv.2.weight"].reshape(state["comm_conv.2.weight"].shape[:2]),
        "joint_fc2.bias": state["comm_conv.2.bias"],
        "head_weight": torch.cat([state[f"disc_poseeach.fc_layer.{j}.weight"] for j in range(num_joints)], 0),
        "head_bias": torch.cat([state[f"disc_poseeach.fc_layer.{j}.bias"] for j in range(num_joints)], 0),
    }
    for key, value in state.items():
        if key.startswith("disc_poseall.fc_all_pose."):
            out["pose_mlp." + key[len("disc_poseall.fc_all_pose.") :]] = value
    return out
