"""The HMR / SPIN / EFT image regressor (docs/protocols.md#the-hmr-regressor, docs/formats.md#hmr-spin-and-eft-checkpoints): ResNet-50 trunk + iterative 6D regressor.

Module and parameter names are SPIN's (SPIN:models/hmr.py), so a SPIN or EFT checkpoint
(`checkpoint['model']`, 331 entries) loads without renaming. The trunk is torchvision's ResNet-50 built
with `weights=None`: nothing is ever downloaded; pretrained weights come only from a local checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torchvision
from torch import nn

from pose_prior.io import load_tensors_file
from pose_prior.rotations import sixd_to_matrix

NUM_SMPL_JOINTS = 24
POSE_DIM = 6 * NUM_SMPL_JOINTS  # 144
SHAPE_DIM = 10
CAM_DIM = 3
FEATURE_DIM = 2048
IMG_RES = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_PARAMS_KEYS = ("pose", "shape", "cam")


class HMROutput(NamedTuple):
    rotmat: torch.Tensor  # (B, 24, 3, 3): joint 0 = global orientation, 1..23 = SMPL body joints
    betas: torch.Tensor  # (B, 10)
    cam: torch.Tensor  # (B, 3) weak perspective [s, tx, ty] in normalised crop coordinates
    features: torch.Tensor  # (B, 2048) pooled ResNet-50 features
    pose6d: torch.Tensor  # (B, 144) raw 6D pose of the last iteration
    hidden: torch.Tensor  # (B, 1024) fc2 output of the last iteration


def default_mean_params() -> dict[str, np.ndarray]:
    """Built-in stand-in for smpl_mean_params.npz: global orient diag(1,-1,-1), identity body, zero shape, cam [0.9,0,0]."""
    identity6d = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)  # 3x2 row-major: columns e1, e2
    flip6d = np.array([1.0, 0.0, 0.0, -1.0, 0.0, 0.0], dtype=np.float32)  # columns e1, -e2 -> R = diag(1,-1,-1)
    pose = np.concatenate([flip6d] + [identity6d] * (NUM_SMPL_JOINTS - 1))
    return {"pose": pose, "shape": np.zeros(SHAPE_DIM, np.float32), "cam": np.array([0.9, 0.0, 0.0], np.float32)}


def load_mean_params(path: str | os.PathLike | None) -> dict[str, np.ndarray]:
    """SPIN's data/smpl_mean_params.npz (`pose` (144,), `shape` (10,), `cam` (3,)), or the built-in default if None."""
    if path is None:
        return default_mean_params()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (SPIN's data/smpl_mean_params.npz)")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in MEAN_PARAMS_KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; smpl_mean_params.npz has {list(MEAN_PARAMS_KEYS)}")
        out = {k: np.asarray(npz[k], dtype=np.float32).reshape(-1) for k in MEAN_PARAMS_KEYS}
    for key, size in (("pose", POSE_DIM), ("shape", SHAPE_DIM), ("cam", CAM_DIM)):
        if out[key].shape != (size,):
            raise ValueError(f"{path}: key '{key}' must have {size} numbers, got {out[key].shape[0]}")
    return out


def normalize_image(crop: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32: /255, ImageNet mean/std."""
    x = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def denormalize_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) uint8."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype)[:, None, None]
    img = ((x.detach().cpu() * std + mean).clamp(0, 1) * 255).round().byte()
    return img.permute(1, 2, 0).numpy()


class HMR(nn.Module):
    """SPIN's HMR: ResNet-50 (torchvision names) -> 2048 -> 3 residual iterations of fc1/fc2 -> pose/shape/cam."""

    def __init__(self, mean_params: str | os.PathLike | dict[str, np.ndarray] | None = None, n_iter: int = 3) -> None:
        super().__init__()
        params = mean_params if isinstance(mean_params, dict) else load_mean_params(mean_params)
        trunk = torchvision.models.resnet50(weights=None)  # never downloads
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.n_iter = int(n_iter)
        in_features = FEATURE_DIM + POSE_DIM + SHAPE_DIM + CAM_DIM  # 2205
        self.fc1 = nn.Linear(in_features, 1024)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(1024, POSE_DIM)
        self.decshape = nn.Linear(1024, SHAPE_DIM)
        self.deccam = nn.Linear(1024, CAM_DIM)
        for head in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(head.weight, gain=0.01)
        self.register_buffer("init_pose", torch.as_tensor(params["pose"], dtype=torch.float32).reshape(1, -1))
        self.register_buffer("init_shape", torch.as_tensor(params["shape"], dtype=torch.float32).reshape(1, -1))
        self.register_buffer("init_cam", torch.as_tensor(params["cam"], dtype=torch.float32).reshape(1, -1))

    def backbone_modules(self) -> list[nn.Module]:
        """The ResNet-50 trunk (conv1 ... layer4)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]

    def head_modules(self) -> list[nn.Module]:
        """The iterative regressor (fc1, fc2, decpose, decshape, deccam)."""
        return [self.fc1, self.fc2, self.decpose, self.decshape, self.deccam]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 224, 224), ImageNet-normalised -> pooled features (B, 2048)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, 7, 7)
        return self.avgpool(x).flatten(1)

    def regress(self, features: torch.Tensor, n_iter: int | None = None) -> HMROutput:
        """Pooled features (B, 2048) -> iterative estimate starting from the mean parameters."""
        B = features.shape[0]
        pose = self.init_pose.expand(B, -1)
        shape = self.init_shape.expand(B, -1)
        cam = self.init_cam.expand(B, -1)
        hidden = features.new_zeros(B, 1024)
        for _ in range(self.n_iter if n_iter is None else n_iter):
            xc = torch.cat([features, pose, shape, cam], 1)  # (B, 2205)
            hidden = self.drop2(self.fc2(self.drop1(self.fc1(xc))))  # no nonlinearity (SPIN/EFT)
            pose = self.decpose(hidden) + pose
            shape = self.decshape(hidden) + shape
            cam = self.deccam(hidden) + cam
        rotmat = sixd_to_matrix(pose.reshape(B, NUM_SMPL_JOINTS, 6))  # (B, 24, 3, 3)
        return HMROutput(rotmat, shape, cam, features, pose, hidden)

    def forward(self, x: torch.Tensor, n_iter: int | None = None) -> HMROutput:
        return self.regress(self.features(x), n_iter)


@dataclass
class CheckpointReport:
    """What `load_hmr_checkpoint` did."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks
    stripped_prefix: str = ""

    def __str__(self) -> str:
        s = f"{self.path}: loaded {len(self.loaded)} tensors"
        if self.stripped_prefix:
            s += f" (stripped prefix {self.stripped_prefix!r})"
        if self.missing:
            s += f"; missing {len(self.missing)}: {self.missing[:6]}{' ...' if len(self.missing) > 6 else ''}"
        if self.unexpected:
            s += f"; unexpected {len(self.unexpected)}: {self.unexpected[:6]}{' ...' if len(self.unexpected) > 6 else ''}"
        return s


def _state_dict_of(payload: object, path: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        state = payload["model"]
    elif isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        state = payload["state_dict"]
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        state = payload
    else:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: expected a SPIN/EFT checkpoint with a 'model' state dict, got {keys}")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_hmr_checkpoint(model: HMR, path: str | os.PathLike, strict: bool = False) -> CheckpointReport:
    """Load a SPIN / EFT checkpoint (`checkpoint['model']`) into `model` with torch.load(weights_only=True).

    A `module.` (DataParallel) or `model.` prefix is stripped. Missing and unexpected keys are reported
    (and raise with `strict`); a key present on both sides with another shape always raises.
    """
    path = os.fspath(path)
    payload = load_tensors_file(path, "a SPIN model_checkpoint.pt or an EFT model-zoo .pt")
    state = _state_dict_of(payload, path)
    report = CheckpointReport(path)
    own = model.state_dict()
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            state = {k[len(prefix):]: v for k, v in state.items()}
            report.stripped_prefix = prefix
            break
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: tensors with the wrong shape for SPIN's HMR: {wrong[:6]}")
    result = model.load_state_dict(state, strict=False)
    report.missing = list(result.missing_keys)
    report.unexpected = list(result.unexpected_keys)
    report.loaded = [k for k in state if k in own]
    if strict and (report.missing or report.unexpected):
        raise ValueError(str(report))
    return report


def calibrate_batchnorm(model: HMR, batches, max_batches: int = 4) -> int:
    """Re-estimate the trunk's BatchNorm running statistics (cumulative average) on image batches, weights untouched.

    For a trunk WITHOUT pretrained weights (the synthetic embedded default): a random ResNet-50 with the
    initial statistics (mean 0, var 1) produces features ~50x larger than a trained one, which makes
    the heads' training diverge. `batches` yields (B, 3, 224, 224) tensors or dicts with "img". Returns
    the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    used = 0
    with torch.no_grad():
        for batch in batches:
            if used >= max_batches:
                break
            x = batch["img"] if isinstance(batch, dict) else batch
            model.features(x.to(model.init_pose.device))
            used += 1
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return used
