"""VPoser v2 (V02_05) in plain PyTorch: the network, its training losses and a checkpoint loader.

The modules are laid out exactly as human_body_prior's `VPoser` (docs/protocols.md#vposer-architecture), so the state
dict keys are the published ones (`encoder_net.2.weight`, `encoder_net.8.mu.weight`,
`decoder_net.5.bias`, ...) and the released weights load strictly. Differences from the original:
`decode` returns `pose_body` flat (B, 63) instead of (B, 21, 3), and the axis-angle conversion uses roma
(exact at 0 and pi) instead of torchgeometry.
"""

from __future__ import annotations

import collections
import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pose_prior.rotations import body_pose_to_matrices, matrices_to_body_pose, sixd_to_matrix
from pose_prior.safe_pickle import restricted_pickle_module, torch_tensor_globals

NUM_JOINTS = 21
VPOSER_PARAMETER_COUNT = 936_252  # num_neurons=512, latentD=32 (docs/protocols.md#vposer-architecture)


# --- network -------------------------------------------------------------------------------------
class BatchFlatten(nn.Module):
    """(B, ...) -> (B, prod(...))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class NormalDistDecoder(nn.Module):
    """Features -> Normal(mu, softplus(h)): VPoser's "logvar" head is used as a std through softplus."""

    def __init__(self, num_feat_in: int, latent_dim: int) -> None:
        super().__init__()
        self.mu = nn.Linear(num_feat_in, latent_dim)
        self.logvar = nn.Linear(num_feat_in, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mu(x), F.softplus(self.logvar(x)))


class ContinousRotReprDecoder(nn.Module):
    """(B, J*6) -> (B*J, 3, 3): row-major 3x2 per joint, Gram-Schmidt-ed columns (VPoser's spelling kept)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sixd_to_matrix(x.reshape(-1, 6))


class VPoser(nn.Module):
    """VPoser v2: encoder (B, 63) -> Normal over R^latent_dim; decoder z -> 21 rotation matrices."""

    def __init__(self, num_neurons: int = 512, latent_dim: int = 32, num_joints: int = NUM_JOINTS) -> None:
        super().__init__()
        self.num_neurons, self.latent_dim, self.num_joints = int(num_neurons), int(latent_dim), int(num_joints)
        n_features = self.num_joints * 3
        self.encoder_net = nn.Sequential(
            BatchFlatten(),  # 0
            nn.BatchNorm1d(n_features),  # 1
            nn.Linear(n_features, num_neurons),  # 2
            nn.LeakyReLU(),  # 3 (slope 0.01)
            nn.BatchNorm1d(num_neurons),  # 4
            nn.Dropout(0.1),  # 5
            nn.Linear(num_neurons, num_neurons),  # 6
            nn.Linear(num_neurons, num_neurons),  # 7 (no activation between 6 and 7, as published)
            NormalDistDecoder(num_neurons, latent_dim),  # 8
        )
        self.decoder_net = nn.Sequential(
            nn.Linear(latent_dim, num_neurons),  # 0
            nn.LeakyReLU(),  # 1
            nn.Dropout(0.1),  # 2
            nn.Linear(num_neurons, num_neurons),  # 3
            nn.LeakyReLU(),  # 4
            nn.Linear(num_neurons, self.num_joints * 6),  # 5
            ContinousRotReprDecoder(),  # 6
        )

    def encode(self, pose_body: torch.Tensor) -> torch.distributions.Normal:
        """(B, 63) axis-angle body pose -> q(z | pose), a Normal with (B, latent_dim) loc and scale."""
        return self.encoder_net(pose_body)

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, latent_dim) -> pose_body (B, 63) axis-angle, pose_body_matrot (B, 21, 9)."""
        bs = z.shape[0]
        mats = self.decoder_net(z).reshape(bs, self.num_joints, 3, 3)  # (B, 21, 3, 3)
        return {"pose_body": matrices_to_body_pose(mats), "pose_body_matrot": mats.reshape(bs, self.num_joints, 9)}

    def forward(self, pose_body: torch.Tensor) -> dict[str, Any]:
        """Encode, draw z with rsample, decode; also returns poZ_body_mean, poZ_body_std, q_z."""
        q_z = self.encode(pose_body)
        out: dict[str, Any] = self.decode(q_z.rsample())
        out.update({"poZ_body_mean": q_z.mean, "poZ_body_std": q_z.scale, "q_z": q_z})
        return out

    @torch.no_grad()
    def sample_poses(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Decode n draws of z ~ N(0, I) (in eval mode, as the original)."""
        p = next(self.parameters())
        z = torch.randn(int(n), self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        was_training = self.training
        self.eval()
        try:
            return self.decode(z)
        finally:
            self.train(was_training)


# --- losses (docs/protocols.md#vposer-training) -------------------------------------------------------------------
def kl_term(q: torch.distributions.Normal) -> torch.Tensor:
    """Mean over the batch of sum over latent dims of KL(q || N(0, I))."""
    p = torch.distributions.Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
    return torch.distributions.kl_divergence(q, p).sum(dim=1).mean()


def mesh_l1(v_pred: torch.Tensor, v_gt: torch.Tensor) -> torch.Tensor:
    """L1 averaged over every vertex coordinate: (B, V, 3) x2 -> scalar."""
    return F.l1_loss(v_pred, v_gt, reduction="mean")


def joint_l1(j_pred: torch.Tensor, j_gt: torch.Tensor) -> torch.Tensor:
    """L1 averaged over every joint coordinate: (B, J, 3) x2 -> scalar."""
    return F.l1_loss(j_pred, j_gt, reduction="mean")


def geodesic_angles(r1: torch.Tensor, r2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(..., 3, 3) x2 -> (...,): acos((tr(R1 R2^T) - 1) / 2), cosine clamped to [-1+eps, 1-eps].

    The clamp keeps acos's gradient finite at 0 and pi (upstream clamps to [-1, 1], which gives NaN
    gradients for a perfect reconstruction); it biases the angle by at most acos(1 - eps) ~ 1.4e-3 rad.
    """
    trace = (r1 * r2).sum(dim=(-2, -1))  # tr(R1 R2^T) = sum_ij R1_ij R2_ij
    return torch.acos(((trace - 1.0) / 2.0).clamp(-1.0 + eps, 1.0 - eps))


def geodesic_matrot(r1: torch.Tensor, r2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean geodesic angle (radians) between rotation matrices (..., 3, 3) or flattened (..., 9)."""
    if r1.shape[-1] == 9:
        r1 = r1.reshape(*r1.shape[:-1], 3, 3)
    if r2.shape[-1] == 9:
        r2 = r2.reshape(*r2.shape[:-1], 3, 3)
    return geodesic_angles(r1, r2, eps).mean()


VPOSER_LOSS_WEIGHTS = {"kl": 0.005, "mesh": 4.0, "matrot": 2.0, "jtr": 2.0}  # V02_05.yaml


def vposer_loss(
    q_z: torch.distributions.Normal,
    v_pred: torch.Tensor,
    v_gt: torch.Tensor,
    matrot_pred: torch.Tensor,
    matrot_gt: torch.Tensor,
    j_pred: torch.Tensor,
    j_gt: torch.Tensor,
    epoch: int,
    keep_extra_until: int = 15,
    weights: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted VPoser v2 loss terms and `loss_total` (their sum), as vposer_trainer `_compute_loss`.

    loss_kl = 0.005 KL, loss_mesh_rec = 4 mesh L1; while epoch < keep_extra_until also
    matrot = 2 geodesic angle and jtr = 2 joint L1. Vertices/joints come from the body model posed with
    the decoded and the input body pose (other parameters zero); the caller runs the body model.
    """
    w = {**VPOSER_LOSS_WEIGHTS, **(weights or {})}
    terms = {"loss_kl": w["kl"] * kl_term(q_z), "loss_mesh_rec": w["mesh"] * mesh_l1(v_pred, v_gt)}
    if epoch < keep_extra_until:
        terms["matrot"] = w["matrot"] * geodesic_matrot(matrot_pred, matrot_gt)
        terms["jtr"] = w["jtr"] * joint_l1(j_pred, j_gt)
    terms["loss_total"] = torch.stack(list(terms.values())).sum()
    return terms


def input_matrices(pose_body: torch.Tensor) -> torch.Tensor:
    """(B, 63) axis-angle -> (B, 21, 9): the target of the matrot term."""
    return body_pose_to_matrices(pose_body).reshape(pose_body.shape[0], -1, 9)


def vposer_batch_loss(
    model: VPoser,
    pose_body: torch.Tensor,
    body_model: nn.Module,
    epoch: int,
    keep_extra_until: int = 15,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One training batch: forward VPoser, pose the body model with decoded and input poses, `vposer_loss`.

    `body_model(pose)` must return an object with `.vertices` (B, V, 3) and `.joints` (B, J, 3) (our
    BodyModel). It is given the decoded rotation matrices (B, 21, 3, 3) when it is our BodyModel (no log
    map in the graph), else the decoded axis-angle pose (B, 63) as upstream does. Returns the loss terms
    plus `out` (the model's forward dict).
    """
    out = model(pose_body)
    bs = pose_body.shape[0]
    mats = out["pose_body_matrot"].reshape(bs, -1, 3, 3)
    rec = body_model(mats if _takes_matrices(body_model) else out["pose_body"])
    with torch.no_grad():
        orig = body_model(pose_body)
    terms: dict[str, Any] = vposer_loss(
        out["q_z"], rec.vertices, orig.vertices, out["pose_body_matrot"], input_matrices(pose_body),
        rec.joints, orig.joints, epoch, keep_extra_until, weights,
    )
    terms["out"] = out
    return terms


def _takes_matrices(body_model: nn.Module) -> bool:
    try:
        from pose_prior.body_model import BodyModel
    except ImportError:  # pragma: no cover - body model package missing
        return False
    return isinstance(body_model, BodyModel)


# --- checkpoints ---------------------------------------------------------------------------------
CHECKPOINT_PREFIX = "vp_model."
# Top-level packages whose objects may appear in a Lightning 1.x checkpoint outside `state_dict`
# (callback states keyed by class, AttributeDict / omegaconf hyperparameters). The fallback loader
# replaces them with `pose_prior.safe_pickle` placeholders and never imports or runs them.
INERT_PACKAGES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "dotmap")
# Besides tensors: what omegaconf's pickled configs reference (node metadata types, content containers).
_CHECKPOINT_EXTRA_GLOBALS: dict[tuple[str, str], Any] = {
    ("typing", "Any"): Any,
    ("builtins", "dict"): dict,
    ("__builtin__", "dict"): dict,  # torch.save's protocol 2 writes Python 2 module names
    ("collections", "defaultdict"): collections.defaultdict,
}


def load_vposer_checkpoint(
    source: str | os.PathLike | Mapping[str, Any], prefix: str = CHECKPOINT_PREFIX
) -> VPoser:
    """A VPoser (eval mode) from a V02_05 Lightning checkpoint, its `state_dict`, or a bare VPoser state dict.

    Keys starting with `prefix` are stripped of it; keys of the Lightning module that are not VPoser's
    (`bm_train.*` body-model buffers, ...) are dropped; the rest must match the model exactly (strict).
    Network sizes (num_neurons, latent_dim) are read from the weight shapes.
    Files are read with torch.load(weights_only=True); a Lightning 1.x checkpoint that pickles
    Lightning classes (e.g. callback states keyed by class) falls back to the restricted unpickler of
    `pose_prior.safe_pickle` (see `_load_checkpoint_file`); any other class is refused.
    """
    where = str(source) if isinstance(source, (str, os.PathLike)) else "<state dict>"
    ckpt = _load_checkpoint_file(source) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(ckpt, Mapping):
        raise TypeError(f"{where}: expected a checkpoint dict, got {type(ckpt).__name__}")
    state = ckpt["state_dict"] if "state_dict" in ckpt else ckpt
    if not isinstance(state, Mapping):
        raise TypeError(f"{where}: `state_dict` is a {type(state).__name__}, expected a dict of tensors")
    has_prefix = any(str(k).startswith(prefix) for k in state)
    if has_prefix:
        model_state = {k[len(prefix) :]: v for k, v in state.items() if str(k).startswith(prefix)}
    else:
        model_state = {k: v for k, v in state.items() if str(k).startswith(("encoder_net.", "decoder_net."))}
    for key in ("encoder_net.8.mu.weight", "decoder_net.5.weight"):
        if key not in model_state:
            raise KeyError(
                f"{where}: no VPoser weights found (missing {prefix if has_prefix else ''}{key}); "
                f"first keys: {sorted(map(str, state))[:8]}"
            )
    latent_dim, num_neurons = model_state["encoder_net.8.mu.weight"].shape
    num_joints = model_state["decoder_net.5.weight"].shape[0] // 6
    model = VPoser(num_neurons=num_neurons, latent_dim=latent_dim, num_joints=num_joints)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(model_state))
    unexpected = sorted(set(model_state) - set(expected))
    bad_shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in model_state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or bad_shapes:
        raise RuntimeError(
            f"{where}: VPoser state dict does not match the V02_05 architecture "
            f"(num_neurons={num_neurons}, latent_dim={latent_dim}):\n"
            f"  missing keys: {missing}\n  unexpected keys: {unexpected}\n  shape mismatches: {bad_shapes}"
        )
    model.load_state_dict(model_state, strict=True)
    return model.eval()


def _load_checkpoint_file(path: str | os.PathLike) -> Any:
    """torch.load(weights_only=True); if that refuses a class, `pose_prior.safe_pickle`'s restricted unpickler.

    The second pass exists for Lightning 1.x checkpoints (V02_05), which pickle Lightning/omegaconf objects
    outside `state_dict`; it allows tensors, numpy arrays and containers by name and replaces classes of
    INERT_PACKAGES by placeholders that run nothing. torch's refusal is not re-raised: its message advises
    weights_only=False, and the restricted unpickler's own refusal names the file and the class.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    allowed = {**torch_tensor_globals(), **_CHECKPOINT_EXTRA_GLOBALS}
    pickle_module = restricted_pickle_module(str(path), allowed, placeholder_packages=INERT_PACKAGES)
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
