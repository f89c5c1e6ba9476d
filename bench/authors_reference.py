"""Baseline for bench/train_throughput.py ONLY: the networks and loop written the way the paper's authors did.

Same architecture and losses as pose_prior.priors.gan.networks, in the authors' style: 1x1 Conv2d shared features on
(N, 9, 1, J), a Python loop over J separate nn.Linear per-joint heads, separate discriminator passes
for real and fake, fakes generated per step with autograd recording (then detached), and the generator
step computing (unused) discriminator weight gradients. Not part of the package; never imported by it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContinousRotReprDecoder(nn.Module):
    """6D (row-major 3x2) -> rotation matrix by Gram-Schmidt (VPoser v1 / authors)."""

    def forward(self, module_input: torch.Tensor) -> torch.Tensor:
        reshaped_input = module_input.view(-1, 3, 2)
        b1 = F.normalize(reshaped_input[:, :, 0], dim=1)
        dot_prod = torch.sum(b1 * reshaped_input[:, :, 1], dim=1, keepdim=True)
        b2 = F.normalize(reshaped_input[:, :, 1] - dot_prod * b1, dim=-1)
        b3 = torch.cross(b1, b2, dim=1)
        return torch.stack([b1, b2, b3], dim=-1)


class AuthorsGenerator(nn.Module):
    def __init__(self, num_neurons: int = 512, latentD: int = 32, num_joints: int = 21) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.dropout = nn.Dropout(p=0.1)
        self.bodyprior_dec_fc1 = nn.Linear(latentD, num_neurons)
        self.bodyprior_dec_fc2 = nn.Linear(num_neurons, num_neurons)
        self.rot_decoder = ContinousRotReprDecoder()
        self.bodyprior_dec_out = nn.Linear(num_neurons, num_joints * 6)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bodyprior_dec_fc1(z), negative_slope=0.2)
        x = self.dropout(x)
        x = F.leaky_relu(self.bodyprior_dec_fc2(x), negative_slope=0.2)
        x = self.rot_decoder(self.bodyprior_dec_out(x))
        return x.view(-1, 1, self.num_joints, 9).squeeze(1)  # (N, J, 9)


class PoseEachDiscriminator(nn.Module):
    def __init__(self, num_joints: int, hidden: int = 32) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.fc_layer = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(num_joints)])

    def forward(self, comm: torch.Tensor) -> torch.Tensor:  # comm (N, C, J)
        return torch.cat([self.fc_layer[j](comm[:, :, j]) for j in range(self.num_joints)], 1)


class PoseAllDiscriminator(nn.Module):
    def __init__(self, num_joints: int, hidden: int = 1024, num_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(32 * num_joints, hidden), nn.LeakyReLU(0.2)]
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(hidden, 1))
        self.fc_all_pose = nn.Sequential(*layers)

    def forward(self, comm: torch.Tensor) -> torch.Tensor:
        return self.fc_all_pose(comm.contiguous().view(comm.size(0), -1))


class AuthorsDiscriminator(nn.Module):
    def __init__(self, num_joints: int = 21, hidden_poseall: int = 1024, hidden_comm: int = 32) -> None:
        super().__init__()
        self.num_joints, self.hidden_comm = num_joints, hidden_comm
        self.comm_conv = nn.Sequential(
            nn.Conv2d(9, hidden_comm, kernel_size=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden_comm, hidden_comm, kernel_size=1),
            nn.LeakyReLU(0.2),
        )
        self.disc_poseeach = PoseEachDiscriminator(num_joints, hidden_comm)
        self.disc_poseall = PoseAllDiscriminator(num_joints, hidden_poseall)

    def forward(self, pose: torch.Tensor) -> dict[str, torch.Tensor]:  # pose (N, J, 9)
        inputs = pose.transpose(1, 2).unsqueeze(2)  # (N, 9, 1, J)
        comm = self.comm_conv(inputs).view(-1, self.hidden_comm, self.num_joints)  # (N, C, J)
        return {"poseeach": self.disc_poseeach(comm), "poseall": self.disc_poseall(comm)}


def _authors_lsgan(out: dict[str, torch.Tensor], label: float, joint_weight: float, pose_weight: float) -> torch.Tensor:
    """Their loss scale: each column's squared error x weight / columns of its term, mean over batch and columns."""
    each, whole = out["poseeach"], out["poseall"]  # (N, J), (N, 1)
    cols = torch.cat([(each - label) ** 2 * (joint_weight / each.shape[1]), (whole - label) ** 2 * pose_weight], 1)
    return cols.mean()


def authors_procedure_step(G, D, g_opt, d_opt, real, latent, d_steps=10, joint_weight=21.0, pose_weight=1.0):
    """The authors' iteration as their code runs it: ONE real batch (B, J, 9); one generator step (fakes with
    autograd, discriminator weight gradients computed too), then `d_steps` discriminator steps on the same
    real batch and the same (detached) fakes, real and fake in separate passes, per-joint heads in a loop."""
    fake = G(latent.sample(real.shape[0]))
    g_loss = _authors_lsgan(D(fake), 1.0, joint_weight, pose_weight)
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()
    fake = fake.detach()
    for _ in range(d_steps):
        loss = (_authors_lsgan(D(fake), 0.0, joint_weight, pose_weight)
                + _authors_lsgan(D(real), 1.0, joint_weight, pose_weight))
        d_opt.zero_grad()
        loss.backward()
        d_opt.step()
    return loss.detach(), g_loss.detach()


def authors_train_step(G, D, g_opt, d_opt, real_chunks, latent, joint_weight=21.0, pose_weight=1.0):
    """The "fresh" variant in the authors' style: k discriminator steps (one per real chunk (B, J, 9), fresh
    fakes each) then one generator step, unfused."""
    for real in real_chunks:
        fake = G(latent.sample(real.shape[0])).detach()
        d_real, d_fake = D(real), D(fake)
        loss = (
            joint_weight * torch.mean((d_real["poseeach"] - 1) ** 2)
            + pose_weight * torch.mean((d_real["poseall"] - 1) ** 2)
            + joint_weight * torch.mean(d_fake["poseeach"] ** 2)
            + pose_weight * torch.mean(d_fake["poseall"] ** 2)
        )
        d_opt.zero_grad()
        loss.backward()
        d_opt.step()
    d_gen = D(G(latent.sample(real_chunks[0].shape[0])))
    g_loss = joint_weight * torch.mean((d_gen["poseeach"] - 1) ** 2) + pose_weight * torch.mean(
        (d_gen["poseall"] - 1) ** 2
    )
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()
    return loss.detach(), g_loss.detach()
