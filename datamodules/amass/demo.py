"""Synthetic AMASS-format tree: smooth body motions within joint limits, in AMASS's real file layout.

`<root>/<SubDataset>/<subject>/<seq>_poses.npz` (SMPL+H G: `poses` (T,156), `trans`, `betas` (16,),
`dmpls` (T,8), `gender`, `mocap_framerate`) and `<seq>_stageii.npz` (SMPL-X N: `pose_body` (T,63),
`root_orient`, `pose_hand` (T,90), `pose_jaw`, `pose_eye`, `poses` (T,165), `trans`, `betas`, `gender`,
`mocap_frame_rate`, ...). Sub-dataset folder names include AMASS release aliases (`BioMotionLab_NTroje`
is BMLrub, `HDM05` is MPI_HDM05) so that the split/alias handling is exercised. Everything is
deterministic given the seed; every file is written atomically; `demo_manifest.json` (written last)
marks a complete tree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from pose_prior.io import atomic_savez, atomic_write_text

# SMPL / SMPL-H body joints 1..21 (pose vector order; the pelvis is the global orientation).
BODY_JOINTS: tuple[str, ...] = (
    "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
    "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder",
    "l_elbow", "r_elbow", "l_wrist", "r_wrist",
)
J = {name: i for i, name in enumerate(BODY_JOINTS)}

# Per-joint bounds (radians) of the axis-angle components (x, y, z) in SMPL's joint frames (rest =
# T-pose, x = subject's left, y = up, z = forward). For the one-axis-dominant motions generated here the
# components are the Euler angles. Signs: hip flexion (leg forward) is -x; knee flexion +x (one way only);
# ankle plantar flexion +x; spine forward bend +x; left arm down -z / forward -y; right arm mirrored
# (down +z, forward +y); left elbow flexion -y, right elbow +y (one way only).
_LIMITS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "l_hip": ((-2.0, 0.5), (-0.6, 0.6), (-0.3, 0.9)),
    "r_hip": ((-2.0, 0.5), (-0.6, 0.6), (-0.9, 0.3)),
    "spine1": ((-0.3, 0.7), (-0.45, 0.45), (-0.3, 0.3)),
    "l_knee": ((0.0, 2.3), (-0.1, 0.1), (-0.1, 0.1)),
    "r_knee": ((0.0, 2.3), (-0.1, 0.1), (-0.1, 0.1)),
    "spine2": ((-0.2, 0.4), (-0.35, 0.35), (-0.2, 0.2)),
    "l_ankle": ((-0.5, 0.8), (-0.3, 0.3), (-0.3, 0.3)),
    "r_ankle": ((-0.5, 0.8), (-0.3, 0.3), (-0.3, 0.3)),
    "spine3": ((-0.2, 0.4), (-0.35, 0.35), (-0.2, 0.2)),
    "l_foot": ((-0.3, 0.3), (-0.1, 0.1), (-0.1, 0.1)),
    "r_foot": ((-0.3, 0.3), (-0.1, 0.1), (-0.1, 0.1)),
    "neck": ((-0.5, 0.6), (-0.6, 0.6), (-0.4, 0.4)),
    "l_collar": ((-0.2, 0.2), (-0.3, 0.3), (-0.2, 0.4)),
    "r_collar": ((-0.2, 0.2), (-0.3, 0.3), (-0.4, 0.2)),
    "head": ((-0.4, 0.5), (-0.6, 0.6), (-0.3, 0.3)),
    "l_shoulder": ((-1.0, 1.0), (-1.6, 0.8), (-1.4, 1.2)),
    "r_shoulder": ((-1.0, 1.0), (-0.8, 1.6), (-1.2, 1.4)),
    "l_elbow": ((-0.6, 0.6), (-2.4, 0.0), (-0.1, 0.1)),
    "r_elbow": ((-0.6, 0.6), (0.0, 2.4), (-0.1, 0.1)),
    "l_wrist": ((-0.8, 0.8), (-0.5, 0.5), (-0.8, 0.8)),
    "r_wrist": ((-0.8, 0.8), (-0.5, 0.5), (-0.8, 0.8)),
}
JOINT_LIMITS = np.array([_LIMITS[name] for name in BODY_JOINTS], dtype=np.float64)  # (21, 3, 2) lo, hi

_ARM_DOWN = 1.1  # |z| of the shoulders with the arms hanging


@dataclass(frozen=True)
class DemoDataset:
    """One synthetic sub-dataset: folder name, file format ('smplh' G or 'smplx' N), subject prefix."""

    name: str
    format: str  # smplh | smplx
    subject_prefix: str


# Two train sub-datasets (one under its release alias), two valid (one SMPL-X N under an alias), one test.
DEMO_DATASETS: tuple[DemoDataset, ...] = (
    DemoDataset("CMU", "smplh", "0"),
    DemoDataset("BioMotionLab_NTroje", "smplh", "rub0"),  # BMLrub
    DemoDataset("HumanEva", "smplh", "S"),
    DemoDataset("HDM05", "smplx", "hdm"),  # MPI_HDM05, SMPL-X N stageii files
    DemoDataset("Transitions_mocap", "smplh", "mazen"),
)

DEMO_MANIFEST = "demo_manifest.json"
GENERATOR_VERSION = 2  # bump when the generated motions change, so existing demo trees are rewritten


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _smooth_noise(t: np.ndarray, dims: int, rng: np.random.Generator, fmin: float, fmax: float,
                  waves: int = 3) -> np.ndarray:
    """(T, dims) sum of `waves` random sinusoids per dimension, each in [-1, 1] overall."""
    freqs = rng.uniform(fmin, fmax, size=(waves, dims))
    phases = rng.uniform(0.0, 2 * np.pi, size=(waves, dims))
    weights = rng.dirichlet(np.ones(waves), size=dims).T  # (waves, dims), sums to 1
    out = np.zeros((t.shape[0], dims))
    for k in range(waves):
        out += weights[k] * np.sin(2 * np.pi * freqs[k] * t[:, None] + phases[k])
    return out


def _rest(T: int) -> np.ndarray:
    """(T, 21, 3) standing with the arms hanging and the elbows slightly bent."""
    body = np.zeros((T, 21, 3))
    body[:, J["l_shoulder"], 2] = -_ARM_DOWN
    body[:, J["r_shoulder"], 2] = _ARM_DOWN
    body[:, J["l_elbow"], 1] = -0.2
    body[:, J["r_elbow"], 1] = 0.2
    return body


def _raise_cos(t: np.ndarray, f: float, phase: float) -> np.ndarray:
    """Smooth 0 -> 1 -> 0 cycles."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * f * t + phase)


# Each motion: (t (T,), rng) -> (body (T,21,3), root height offset (T,), forward speed m/s).
def _walk(t: np.ndarray, rng: np.random.Generator, run: bool = False):
    body = _rest(len(t))
    f = rng.uniform(1.3, 1.6) if run else rng.uniform(0.8, 1.1)
    ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    a_hip = rng.uniform(0.5, 0.65) if run else rng.uniform(0.35, 0.5)
    hip0 = -0.4 if run else -0.2
    a_knee = rng.uniform(1.3, 1.7) if run else rng.uniform(0.7, 1.0)
    for side, shift in (("l", 0.0), ("r", np.pi)):
        s = np.sin(ph + shift)
        body[:, J[f"{side}_hip"], 0] = hip0 - a_hip * s
        body[:, J[f"{side}_knee"], 0] = 0.1 + a_knee * (0.5 + 0.5 * np.sin(ph + shift + 0.6))
        body[:, J[f"{side}_ankle"], 0] = 0.1 + 0.25 * np.sin(ph + shift + 1.2)
    a_arm = rng.uniform(0.4, 0.6) if run else rng.uniform(0.2, 0.4)
    body[:, J["l_shoulder"], 1] = a_arm * np.sin(ph)
    body[:, J["r_shoulder"], 1] = a_arm * np.sin(ph)
    bend = 1.4 if run else 0.3
    body[:, J["l_elbow"], 1] = -bend - 0.15 * (0.5 + 0.5 * np.sin(ph))
    body[:, J["r_elbow"], 1] = bend + 0.15 * (0.5 - 0.5 * np.sin(ph))
    body[:, J["spine2"], 1] = 0.1 * np.sin(ph)
    body[:, J["spine1"], 0] = 0.2 if run else 0.03
    height = 0.03 * np.sin(2 * ph)
    return body, height, (3.0 if run else 1.2)


def _run(t: np.ndarray, rng: np.random.Generator):
    return _walk(t, rng, run=True)


def _arm_raise(t: np.ndarray, rng: np.random.Generator):
    body = _rest(len(t))
    f = rng.uniform(0.15, 0.35)
    variant = rng.integers(0, 4)  # both, left, right, alternating
    phase = rng.uniform(0, 2 * np.pi)
    s_l = _raise_cos(t, f, phase) * (variant != 2)
    s_r = _raise_cos(t, f, phase + (np.pi if variant == 3 else 0.0)) * (variant != 1)
    for side, s, sign in (("l", s_l, -1.0), ("r", s_r, 1.0)):
        body[:, J[f"{side}_shoulder"], 2] = sign * (_ARM_DOWN - s * rng.uniform(1.6, 2.2))
        body[:, J[f"{side}_shoulder"], 1] = sign * 0.3 * s
        body[:, J[f"{side}_elbow"], 1] = sign * (0.1 + 0.3 * s)
    body[:, J["head"], 0] = -0.2 * np.maximum(s_l, s_r)
    return body, np.zeros(len(t)), 0.0


def _squat(t: np.ndarray, rng: np.random.Generator):
    body = _rest(len(t))
    s = _raise_cos(t, rng.uniform(0.2, 0.45), rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    for side, sign in (("l", -1.0), ("r", 1.0)):
        body[:, J[f"{side}_hip"], 0] = -1.7 * s
        body[:, J[f"{side}_knee"], 0] = 2.1 * s
        body[:, J[f"{side}_ankle"], 0] = -0.35 * s
        body[:, J[f"{side}_shoulder"], 1] = sign * 1.5 * s  # arms forward for balance
        body[:, J[f"{side}_shoulder"], 2] = sign * _ARM_DOWN * (1 - s)
    body[:, J["spine1"], 0] = 0.4 * s
    return body, -0.45 * s, 0.0


def _reach_twist(t: np.ndarray, rng: np.random.Generator):
    body = _rest(len(t))
    ph = 2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 2 * np.pi)
    twist = rng.uniform(0.6, 1.0) * np.sin(ph)
    for name, share in (("spine1", 0.35), ("spine2", 0.3), ("spine3", 0.3)):
        body[:, J[name], 1] = share * twist
    body[:, J["neck"], 1] = 0.4 * twist
    for side, s, sign in (("l", 0.5 + 0.5 * np.sin(ph), -1.0), ("r", 0.5 - 0.5 * np.sin(ph), 1.0)):
        body[:, J[f"{side}_shoulder"], 1] = sign * 1.3 * s
        body[:, J[f"{side}_shoulder"], 2] = sign * (_ARM_DOWN * (1 - s) - 0.3 * s)
        body[:, J[f"{side}_elbow"], 1] = sign * (0.1 + 0.9 * (1 - s))
    return body, np.zeros(len(t)), 0.0


def _leg_raise(t: np.ndarray, rng: np.random.Generator):
    body = _rest(len(t))
    s = _raise_cos(t, rng.uniform(0.2, 0.4), rng.uniform(0, 2 * np.pi))
    side, other = ("l", "r") if rng.integers(0, 2) == 0 else ("r", "l")
    body[:, J[f"{side}_hip"], 0] = -rng.uniform(0.9, 1.4) * s
    body[:, J[f"{side}_knee"], 0] = rng.uniform(0.2, 1.8) * s
    body[:, J[f"{other}_knee"], 0] = 0.1 + 0.1 * s
    body[:, J["l_shoulder"], 2] = -_ARM_DOWN + 0.8 * s
    body[:, J["r_shoulder"], 2] = _ARM_DOWN - 0.8 * s
    body[:, J["spine1"], 0] = -0.1 * s
    return body, np.zeros(len(t)), 0.0


def _freestyle(t: np.ndarray, rng: np.random.Generator):
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    wave = _smooth_noise(t, 63, rng, 0.1, 0.8, waves=4).reshape(len(t), 21, 3)
    body = mid + 0.6 * half * wave
    return body, 0.05 * _smooth_noise(t, 1, rng, 0.1, 0.5)[:, 0], 0.0


MOTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], Any]] = {
    "walk": _walk,
    "armraise": _arm_raise,
    "squat": _squat,
    "reach": _reach_twist,
    "run": _run,
    "legraise": _leg_raise,
    "dance": _freestyle,
}


def soft_clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """Identity inside the limits shrunk by `margin` of the half range, tanh saturation beyond (smooth, C2)."""
    m = margin * (hi - lo) / 2
    top, bottom = hi - m, lo + m
    out = np.where(x > top, top + m * np.tanh((x - top) / m), x)
    out = np.where(x < bottom, bottom + m * np.tanh((x - bottom) / m), out)
    return np.clip(out, lo, hi)


def synthesize_motion(motion: str, frames: int, framerate: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sequence: `pose_body` (T,63) within JOINT_LIMITS, `root_orient` (T,3) z-up, `pose_hand` (T,90), `trans` (T,3)."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion '{motion}'; valid: {', '.join(MOTIONS)}")
    t = np.arange(frames) / framerate
    body, height, speed = MOTIONS[motion](t, rng)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    half = (hi - lo) / 2
    style = rng.normal(0.0, 0.04, size=(21, 3)) * half  # the performer's constant posture offsets
    jitter = 0.08 * half * _smooth_noise(t, 63, rng, 0.2, 1.5).reshape(frames, 21, 3)
    body = soft_clip(body + style + jitter, lo, hi)  # (T, 21, 3)

    heading = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.3, 0.3) * t  # (T,) yaw about world z
    sway = 0.05 * _smooth_noise(t, 3, rng, 0.1, 0.6)
    root = (Rotation.from_rotvec(np.outer(heading, [0.0, 0.0, 1.0])) * Rotation.from_rotvec([np.pi / 2, 0.0, 0.0])
            * Rotation.from_rotvec(sway))  # SMPL y-up -> AMASS z-up, then heading
    forward = np.stack([np.sin(heading), -np.cos(heading), np.zeros(frames)], axis=1)  # body +z in the world
    trans = np.cumsum(speed * forward / framerate, axis=0) + rng.uniform(-1, 1, size=3) * [1.0, 1.0, 0.0]
    trans[:, 2] = 0.9 + height

    curl = rng.uniform(0.0, 0.4, size=90) + 0.15 * _smooth_noise(t, 90, rng, 0.1, 0.8)
    return {
        "pose_body": body.reshape(frames, 63),
        "root_orient": root.as_rotvec(),
        "pose_hand": np.clip(curl, -0.3, 1.2),
        "trans": trans,
    }


def _sequence_arrays(ds: DemoDataset, motion: dict[str, np.ndarray], betas: np.ndarray, gender: str,
                     framerate: float, rng: np.random.Generator) -> dict[str, Any]:
    frames = motion["pose_body"].shape[0]
    if ds.format == "smplh":
        poses = np.concatenate([motion["root_orient"], motion["pose_body"], motion["pose_hand"]], axis=1)
        t = np.arange(frames) / framerate
        return {
            "trans": motion["trans"],
            "gender": np.str_(gender),
            "mocap_framerate": np.float64(framerate),
            "betas": betas,
            "dmpls": 0.5 * _smooth_noise(t, 8, rng, 0.2, 1.0),
            "poses": poses,  # (T, 156)
        }
    if ds.format == "smplx":
        jaw = np.zeros((frames, 3))
        jaw[:, 0] = 0.05 + 0.05 * np.sin(np.arange(frames) / framerate * 2.0)
        eye = np.zeros((frames, 6))
        poses = np.concatenate([motion["root_orient"], motion["pose_body"], jaw, eye, motion["pose_hand"]], axis=1)
        return {
            "gender": np.str_("neutral"),
            "surface_model_type": np.str_("smplx"),
            "mocap_frame_rate": np.float64(framerate),
            "mocap_time_length": np.float64(frames / framerate),
            "trans": motion["trans"],
            "poses": poses,  # (T, 165)
            "betas": betas,
            "num_betas": np.int64(betas.shape[0]),
            "root_orient": motion["root_orient"],
            "pose_body": motion["pose_body"],
            "pose_hand": motion["pose_hand"],
            "pose_jaw": jaw,
            "pose_eye": eye,
        }
    raise ValueError(f"demo dataset {ds.name}: unknown format '{ds.format}' (expected smplh or smplx)")


def _read_demo_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / DEMO_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_demo_amass(
    root: str | Path,
    sequences_per_subject: int = 2,
    subjects_per_dataset: int = 2,
    frames_per_sequence: int = 240,
    framerate: float = 60.0,
    seed: int = 0,
    datasets: Sequence[DemoDataset] = DEMO_DATASETS,
) -> list[Path]:
    """Write the synthetic AMASS-format tree under `root` (skipped if already complete); return the sequence files."""
    if min(sequences_per_subject, subjects_per_dataset, frames_per_sequence) < 1 or framerate <= 0:
        raise ValueError("demo data: sequences_per_subject, subjects_per_dataset, frames_per_sequence and "
                         f"framerate must be positive (got {sequences_per_subject}, {subjects_per_dataset}, "
                         f"{frames_per_sequence}, {framerate})")
    root = Path(root)
    params = {
        "sequences_per_subject": int(sequences_per_subject), "subjects_per_dataset": int(subjects_per_dataset),
        "frames_per_sequence": int(frames_per_sequence), "framerate": float(framerate), "seed": int(seed),
        "datasets": [asdict(d) for d in datasets], "generator_version": GENERATOR_VERSION,
    }
    old = _read_demo_manifest(root)
    if old is not None and old.get("params") == params and all((root / p).is_file() for p in old["files"]):
        return [root / p for p in old["files"] if p.endswith(("_poses.npz", "_stageii.npz"))]
    if (root / DEMO_MANIFEST).exists():
        (root / DEMO_MANIFEST).unlink()  # the tree is incomplete until the new manifest is written

    written: list[str] = []
    motions = list(MOTIONS)
    counter = 0  # motions cycle over the whole tree, so each split (several sub-datasets) gets all of them
    for ds in datasets:
        for subj in range(subjects_per_dataset):
            subject = f"{ds.subject_prefix}{subj + 1}"
            srng = np.random.default_rng([seed, _stable_int(ds.name), subj])
            gender = "neutral" if ds.format == "smplx" else str(srng.choice(["male", "female"]))
            betas = np.concatenate([srng.normal(0, 1.0, 10), srng.normal(0, 0.3, 6)])  # (16,)
            if ds.format == "smplx":
                rel = f"{ds.name}/{subject}/neutral_stagei.npz"  # per-subject shape file (not a sequence)
                atomic_savez(root / rel, betas=betas, gender=np.str_("neutral"))
                written.append(rel)
            for seq in range(sequences_per_subject):
                rng = np.random.default_rng([seed, _stable_int(ds.name), subj, seq])
                motion = motions[counter % len(motions)]
                counter += 1
                data = synthesize_motion(motion, frames_per_sequence, framerate, rng)
                arrays = _sequence_arrays(ds, data, betas, gender, framerate, rng)
                suffix = "_poses.npz" if ds.format == "smplh" else "_stageii.npz"
                rel = f"{ds.name}/{subject}/{motion}{seq + 1:02d}{suffix}"
                atomic_savez(root / rel, **arrays)
                written.append(rel)

    if old is not None:  # files of an earlier, different demo tree that this one no longer has
        for stale in set(old.get("files", [])) - set(written):
            (root / stale).unlink(missing_ok=True)
    sequences = [p for p in written if p.endswith(("_poses.npz", "_stageii.npz"))]
    manifest = {"generator": "pose-prior synthetic AMASS", "params": params, "files": written,
                "total_frames": len(sequences) * int(frames_per_sequence)}
    atomic_write_text(root / DEMO_MANIFEST, json.dumps(manifest, indent=1))
    return [root / p for p in sequences]


def demo_kwargs(demo_cfg: Any) -> dict[str, Any]:
    """The write_demo_amass arguments in a `demo` config section (DemoDataConfig)."""
    return {
        "sequences_per_subject": int(demo_cfg.sequences_per_subject),
        "subjects_per_dataset": int(demo_cfg.subjects_per_dataset),
        "frames_per_sequence": int(demo_cfg.frames_per_sequence),
        "framerate": float(demo_cfg.framerate),
        "seed": int(demo_cfg.seed),
    }


def run_demo_data(cfg: Any) -> list[Path]:
    """`make demo-data`: write the synthetic tree to cfg.data.demo_dir with the sizes in cfg.demo."""
    root = Path(cfg.data.demo_dir)
    before = (root / DEMO_MANIFEST).stat().st_mtime_ns if (root / DEMO_MANIFEST).exists() else None
    files = write_demo_amass(root, **demo_kwargs(cfg.demo))
    frames = len(files) * int(cfg.demo.frames_per_sequence)
    state = "already complete" if before == (root / DEMO_MANIFEST).stat().st_mtime_ns else "written"
    print(f"synthetic AMASS tree {state}: {root} ({len(files)} sequences, {frames} frames)")
    return files
