"""Networks of the shape priors (paper supplement D): the beta generator, the pose+shape generator, the
HMR shape discriminator and the discriminator of the entangled model.

Samples travel as ONE flat tensor per body, so real and fake batches concatenate into one discriminator
pass (as in `pose_prior.priors.gan.training`):
- GAN-beta: (B, 10) betas;
- GAN-theta-beta: (B, 21 * 9 + 10) = the 21 body rotation matrices (row-major) then the 10 betas
  (`pack_pose_shape` / `unpack_pose_shape`).

Architecture choices (sources):
- `ShapeGenerator`: the pose generator's MLP (VPoser's decoder shape, as in the authors' code:
  latent -> 512 -> 512, LeakyReLU(0.2), dropout 0.1 after the first layer) with a linear 10-beta output:
  betas are unbounded PCA coefficients, so no squashing.
- `PoseShapeGenerator`: the same trunk from ONE shared latent to two linear heads, the pose generator's
  21 x 6D head (same layer names as `PoseGenerator`, so a GAN-S generator's weights can start it) and a
  10-beta head; the paper's "generator with a shared input space" (supplement D.2).
- `ShapeDiscriminator`: HMR's shape discriminator (akanazawa/hmr, `Discriminator_separable_rotations` in
  src/models.py: `slim.stack(shapes, fully_connected, [10, 5])` then a 1-unit linear output), i.e.
  10 -> 10 -> 5 -> 1, 171 parameters ("a 2-layer MLP", supplement D.1). HMR's hidden activation is
  slim's default ReLU; like the authors' pose discriminator, which replaced HMR's ReLUs by LeakyReLU(0.2),
  the slope is `leaky_slope` (slope 0 is HMR's ReLU exactly); with 5-unit layers it also keeps units
  from dying.
- `PoseShapeDiscriminator`: GAN-S's pose discriminator (21 per-joint heads + whole-pose MLP), the shape
  discriminator, and a "poseshape" MLP over the whole generated SMPL vector: 24 outputs, the paper's
  count (D.2). The poseshape MLP reads the pose discriminator's shared per-joint features (21 x 32,
  joint-major) concatenated with the betas, the way HMR's whole-pose MLP reuses those features, with the
  whole-pose MLP's width: (21 * 32 + 10) -> 64 -> 64 -> 1. The authors' exact choice is not published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pose_prior.priors.gan.dropout import FastDropout
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator
from pose_prior.priors.gan.settings import GanSettings
from pose_prior.rotations import sixd_to_matrix

NUM_BETAS = 10
NUM_BODY_JOINTS = 21
SHAPE_DISC_HIDDEN = (10, 5)  # HMR: slim.stack(shapes, slim.fully_connected, [10, 5])


def pack_pose_shape(rotmats: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """(B, J, 3, 3), (B, K) -> (B, J*9 + K) one flat sample per body."""
    return torch.cat([rotmats.reshape(rotmats.shape[0], -1), betas], dim=1)


def unpack_pose_shape(x: torch.Tensor, num_betas: int = NUM_BETAS) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, J*9 + K) -> rotation matrices (B, J, 3, 3), betas (B, K)."""
    rot = x[:, : x.shape[1] - num_betas]
    return rot.reshape(x.shape[0], -1, 3, 3), x[:, x.shape[1] - num_betas:]


class ShapeGenerator(nn.Module):
    """Latent (B, latent_dim) -> betas (B, num_betas)."""

    def __init__(self, latent_dim: int = GanSettings.latent_dim, hidden: int = GanSettings.gen_hidden,
                 num_betas: int = NUM_BETAS, dropout: float = GanSettings.gen_dropout,
                 slope: float = GanSettings.leaky_slope) -> None:
        super().__init__()
        self.latent_dim, self.hidden, self.num_betas = int(latent_dim), int(hidden), int(num_betas)
        self.dropout_p, self.slope = float(dropout), float(slope)
        self.fc1 = nn.Linear(self.latent_dim, self.hidden)
        self.dropout = FastDropout(self.dropout_p)
        self.fc2 = nn.Linear(self.hidden, self.hidden)
        self.out = nn.Linear(self.hidden, self.num_betas)

    def arch_kwargs(self) -> dict[str, int | float]:
        return {"latent_dim": self.latent_dim, "hidden": self.hidden, "num_betas": self.num_betas,
                "dropout": self.dropout_p, "slope": self.slope}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.leaky_relu(self.fc1(z), self.slope))  # (B, H)
        x = F.leaky_relu(self.fc2(x), self.slope)  # (B, H)
        return self.out(x)  # (B, K)

    def sample_vector(self, z: torch.Tensor) -> torch.Tensor:
        """The flat sample the discriminator reads: (B, K) betas."""
        return self(z)


class PoseShapeGenerator(PoseGenerator):
    """One shared latent (B, latent_dim) -> body rotation matrices (B, 21, 3, 3) and betas (B, K).

    `forward` keeps `PoseGenerator`'s meaning (rotation matrices), so the pose interface works unchanged;
    `betas(z)` and `both(z)` add the shape."""

    def __init__(self, latent_dim: int = GanSettings.latent_dim, hidden: int = GanSettings.gen_hidden,
                 num_joints: int = NUM_BODY_JOINTS, dropout: float = GanSettings.gen_dropout,
                 slope: float = GanSettings.leaky_slope, num_betas: int = NUM_BETAS) -> None:
        super().__init__(latent_dim=latent_dim, hidden=hidden, num_joints=num_joints, dropout=dropout, slope=slope)
        self.num_betas = int(num_betas)
        self.shape_out = nn.Linear(self.hidden, self.num_betas)

    def arch_kwargs(self) -> dict[str, int | float]:
        return {**super().arch_kwargs(), "num_betas": self.num_betas}

    def trunk(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> shared features (B, H)."""
        x = self.dropout(F.leaky_relu(self.bodyprior_dec_fc1(z), self.slope))
        return F.leaky_relu(self.bodyprior_dec_fc2(x), self.slope)

    def both(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, latent_dim) -> rotation matrices (B, J, 3, 3), betas (B, K) from one trunk pass."""
        h = self.trunk(z)
        sixd = self.bodyprior_dec_out(h).reshape(z.shape[0], self.num_joints, 6)
        return sixd_to_matrix(sixd), self.shape_out(h)

    def sixd(self, z: torch.Tensor) -> torch.Tensor:
        return self.bodyprior_dec_out(self.trunk(z)).reshape(z.shape[0], self.num_joints, 6)

    def betas(self, z: torch.Tensor) -> torch.Tensor:
        return self.shape_out(self.trunk(z))

    def sample_vector(self, z: torch.Tensor) -> torch.Tensor:
        """The flat sample the discriminator reads: (B, J*9 + K)."""
        return pack_pose_shape(*self.both(z))


class ShapeDiscriminator(nn.Module):
    """HMR's shape discriminator: betas (B, K) -> logit (B, 1); K -> 10 -> 5 -> 1."""

    def __init__(self, num_betas: int = NUM_BETAS, hidden: tuple[int, ...] = SHAPE_DISC_HIDDEN,
                 slope: float = GanSettings.leaky_slope) -> None:
        super().__init__()
        self.num_betas, self.hidden, self.slope = int(num_betas), tuple(int(h) for h in hidden), float(slope)
        layers: list[nn.Module] = []
        width = self.num_betas
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(self.slope)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def arch_kwargs(self) -> dict:
        return {"num_betas": self.num_betas, "hidden": list(self.hidden), "slope": self.slope}

    def forward(self, betas: torch.Tensor) -> torch.Tensor:
        return self.mlp(betas)  # (B, 1)


class PoseShapeDiscriminator(nn.Module):
    """Flat samples (B, J*9 + K) -> logits (B, J + 3): J per-joint, whole pose, shape, poseshape."""

    def __init__(self, num_joints: int = NUM_BODY_JOINTS, num_betas: int = NUM_BETAS,
                 joint_features: int = GanSettings.disc_joint_features, hidden: int = GanSettings.disc_hidden,
                 shape_hidden: tuple[int, ...] = SHAPE_DISC_HIDDEN, slope: float = GanSettings.leaky_slope) -> None:
        super().__init__()
        self.num_joints, self.num_betas = int(num_joints), int(num_betas)
        self.pose = PoseDiscriminator(num_joints=num_joints, joint_features=joint_features, hidden=hidden, slope=slope)
        self.shape = ShapeDiscriminator(num_betas=num_betas, hidden=shape_hidden, slope=slope)
        width = self.num_joints * int(joint_features) + self.num_betas
        self.poseshape = nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, hidden),
                                       nn.LeakyReLU(slope), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rot, betas = unpack_pose_shape(x, self.num_betas)
        B, J, pose = rot.shape[0], self.num_joints, self.pose
        feat = pose.joint_features_of(rot).reshape(B, -1)  # (B, J*C) joint-major, shared by both MLPs
        weight, bias = pose.first_layer()  # as PoseDiscriminator.forward: heads + whole-pose MLP in one GEMM
        per_joint, hidden = F.linear(feat, weight, bias).split([J, weight.shape[0] - J], dim=1)
        whole = pose.pose_mlp[2:](pose.pose_mlp[1](hidden))  # (B, 1)
        both = self.poseshape(torch.cat([feat, betas], dim=1))  # (B, 1)
        return torch.cat([per_joint, whole, self.shape(betas), both], dim=1)  # (B, J + 3)


def shape_discriminator_param_count(num_betas: int = NUM_BETAS, hidden: tuple[int, ...] = SHAPE_DISC_HIDDEN) -> int:
    """Parameters of `ShapeDiscriminator` from the architecture: sum over layers of (in + 1) * out."""
    widths = [num_betas, *hidden, 1]
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def poseshape_mlp_param_count(num_joints: int = NUM_BODY_JOINTS, num_betas: int = NUM_BETAS,
                              joint_features: int = GanSettings.disc_joint_features,
                              hidden: int = GanSettings.disc_hidden) -> int:
    """Parameters of the poseshape MLP: (J*C + K) -> H -> H -> 1."""
    return (num_joints * joint_features + num_betas + 1) * hidden + (hidden + 1) * hidden + (hidden + 1)
