"""Build the open shape data set: realistic anny bodies projected into the open body model's shape space.

The shape priors (GAN-beta, GAN-theta-beta; paper supplement D) are trained on SMPL betas of real bodies
(the authors: SURREAL's CAESAR fits). On the embedded default the body model is the open one, whose 10
betas are a PCA of anny bodies (`tools/build_open_body_model.py`); its data set of realistic shapes is
made here, once, and shipped (anny is not needed at run time). Recipe (docs in README "Shape priors"):

1. Phenotypes from anny's calibrated sampler (`SimpleShapeDistribution`: gender, then height, weight,
   muscle and proportions from age-conditioned distributions calibrated on WHO data), adults of
   morphological age 20-60, the population the open shape space was built from.
2. Each body through the open model's own pipeline (`build_open_body_model`: rest mesh of topology
   "notoes" in SMPL axes, T-posed with anny's skinning, translated by the build's constant shift).
   Every anny phenotype value is kept beside the betas (`phenotype_<name>`; anny's gender 0 = male,
   1 = female: its calibration takes the boys' tables for gender <= 0.5).
3. betas = least-squares projection onto the open model's shape directions (float64):
   argmin_b ||template + shapedirs b - body||^2; the residual (Eq. 5, mm) is kept per body.
The build's shift is recovered by re-making its 300 bodies (same seed): shift = mean of their T-posed
meshes minus the shipped template (one vector; it must be constant over vertices), and their projected
betas must come out with mean 0 and variance 1 (the PCA's own coefficients): both are checked.

    python tools/build_open_shape_set.py [--num 4000] [--seed 1] [--out pose_prior/body_model/assets]
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
sys.path.insert(0, str(ROOT / "tools"))
from build_open_body_model import TOPOLOGIES, anny_samples, sample_phenotypes, t_pose  # noqa: E402

from pose_prior.io import atomic_save, atomic_write_text  # noqa: E402

REFERENCE_BODIES, REFERENCE_SEED = 300, 0  # the open model's own build (tools/build_open_body_model.py)


def t_posed_bodies(phenotypes: dict[str, torch.Tensor], chunk: int = 100) -> np.ndarray:
    """(N, V, 3) float64 T-posed "notoes" meshes in SMPL axes (not yet shifted), chunked over bodies."""
    n = next(iter(phenotypes.values())).shape[0]
    out = []
    for start in range(0, n, chunk):
        part = {k: v[start:start + chunk] for k, v in phenotypes.items()}
        verts, heads, weights, _, labels, parents = anny_samples(TOPOLOGIES["open"], part)
        out.append(t_pose(heads, verts, weights, labels, parents)[1])
    return np.concatenate(out)


def project(bodies: np.ndarray, template: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares betas (N, 10) of bodies (N, V, 3) and the Eq. 5 residual (N,) in metres."""
    a = dirs.reshape(-1, dirs.shape[-1])  # (V*3, 10)
    rhs = (bodies - template).reshape(len(bodies), -1).T  # (V*3, N)
    betas = np.linalg.lstsq(a, rhs, rcond=None)[0].T  # (N, 10)
    recon = template + (betas @ a.T).reshape(bodies.shape)
    return betas, np.linalg.norm(recon - bodies, axis=-1).mean(-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "pose_prior/body_model/assets")
    parser.add_argument("--num", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)  # not the build's seed 0: new bodies
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    model = np.load(ROOT / "pose_prior/body_model/assets/open_smpl.npz")
    template = model["v_template"].astype(np.float64)  # (V, 3)
    dirs = model["shapedirs"].astype(np.float64)  # (V, 3, 10)

    ref = t_posed_bodies(sample_phenotypes(REFERENCE_BODIES, REFERENCE_SEED))
    offset = template - ref.mean(0)  # (V, 3): the build's shift, the same for every vertex
    shift = offset.mean(0)
    shift_spread_mm = float(np.abs(offset - shift).max() * 1000)
    ref_betas, ref_res = project(ref + shift, template, dirs)
    check = {"shift": shift.round(6).tolist(), "shift_spread_mm": round(shift_spread_mm, 6),
             "reference_betas_mean_abs_max": round(float(np.abs(ref_betas.mean(0)).max()), 6),
             "reference_betas_std_range": [round(float(ref_betas.std(0, ddof=1).min()), 6),
                                           round(float(ref_betas.std(0, ddof=1).max()), 6)],
             "reference_residual_mm_mean": round(float(ref_res.mean() * 1000), 4)}
    print("reference check", json.dumps(check), flush=True)
    if shift_spread_mm > 0.1 or check["reference_betas_mean_abs_max"] > 1e-3 or \
            max(abs(s - 1) for s in check["reference_betas_std_range"]) > 1e-3:
        raise RuntimeError(f"the open model's build is not reproduced: {check}")

    phen = sample_phenotypes(args.num, args.seed)
    bodies = t_posed_bodies(phen) + shift
    betas, residual = project(bodies, template, dirs)
    heights = bodies[:, :, 1].max(1) - bodies[:, :, 1].min(1)
    arrays = {"betas": betas.astype(np.float32), "residual_mm": (residual * 1000).astype(np.float32),
              "height_m": heights.astype(np.float32)}
    arrays.update({f"phenotype_{k}": v.double().numpy().astype(np.float32) for k, v in sorted(phen.items())})

    def save(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_save(args.out / "open_shapes.npz", save)
    report = {
        "what": "anny bodies projected into the open body model's 10 betas (tools/build_open_shape_set.py)",
        "anny_version": _anny_version(), "num": int(args.num), "seed": int(args.seed),
        "age_range": [20, 60], "topology": TOPOLOGIES["open"], "keys": sorted(arrays),
        "betas_mean": betas.mean(0).round(4).tolist(), "betas_std": betas.std(0, ddof=1).round(4).tolist(),
        "residual_mm": {"mean": round(float(residual.mean() * 1000), 4),
                        "max": round(float(residual.max() * 1000), 4)},
        "height_m": {"min": round(float(heights.min()), 3), "mean": round(float(heights.mean()), 3),
                     "max": round(float(heights.max()), 3)},
        "reference_check": check, "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(args.out / "open_shapes.json", json.dumps(report, indent=1) + "\n")
    print(json.dumps(report), flush=True)
    return 0


def _anny_version() -> str:
    from importlib.metadata import version

    return version("anny")


if __name__ == "__main__":
    raise SystemExit(main())
