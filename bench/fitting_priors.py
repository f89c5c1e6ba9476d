"""Keypoint fitting time per 100 frames and P-MPJPE of every prior on the same frames, in one run.

Fits the first `--frames` frames of an H3.6M Protocol-2 file (default: the embedded default's synthetic
file, made by `make demo-h36m`) with no prior and with each given prior, through the same code as
`make eval-h36m` (KeypointFittingModule's per-batch fit, without a Trainer), in rounds that alternate the
priors so that load from other processes hits all alike; prints seconds per 100 frames (the best round),
mean P-MPJPE, mean L-BFGS iterations (camera + body stage of the winning row), objective evaluations per
frame (every row of the frame: both orientations, both stages; a load-independent cost) and the GAN-S /
VPoser time ratio (target <= 1.0 at equal or lower P-MPJPE). Prior files default to those `make compare` trains (outputs/compare/priors/<name>/prior.pt).
`--start-pool N` adds a row `<prior>+pool` per prior fitted with `start_pool=N` (each row starts from the best
of its own start and N seeded prior samples), and a ratio line for every GAN-S row against every VPoser row.

    .venv/bin/python bench/fitting_priors.py [--frames 100] [--rounds 2] [--set body_iters=300 ftol=1e-6]
        [--start-pool 64] [--prior gan_s=outputs/runs/gan_s/prior.pt --prior vposer=...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.h36m.reader import H36MEvalDataset, read_h36m_p2  # noqa: E402
from lightning_modules.keypoint_fitting import KeypointFittingModule  # noqa: E402
from pose_prior.body_model import load_body_model  # noqa: E402
from pose_prior.body_model.h36m_regressor import h36m_regressor_for  # noqa: E402
from pose_prior.fitting import FitSettings  # noqa: E402
from pose_prior.priors import load_prior  # noqa: E402

DEFAULT_PRIORS = {name: f"outputs/compare/priors/{name}/prior.pt" for name in ("gmm", "vposer", "gan_s")}


def parse_settings(items: list[str]) -> dict:
    """["key=value", ...] -> FitSettings overrides, each value cast to the field's type."""
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        kind = type(getattr(FitSettings(), key))
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {item}: expected true or false")
            out[key] = value.lower() in ("true", "1")
        else:
            out[key] = kind(float(value) if "." in value or "e" in value else int(value))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--h36m", default="outputs/demo/h36m/h36m_valid_protocol2.npz")
    ap.add_argument("--body-model", default="open")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior", action="append", default=[], help="name=path (repeatable); default: make compare's")
    ap.add_argument("--set", nargs="*", default=[], help="FitSettings overrides, e.g. body_iters=300 ftol=1e-6")
    ap.add_argument("--start-pool", type=int, default=0, help="also fit every prior with this start_pool (0: no)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = dict(p.split("=", 1) for p in args.prior) if args.prior else dict(DEFAULT_PRIORS)
    missing = [f"{n}: {p}" for n, p in paths.items() if not Path(p).is_file()]
    if missing or not Path(args.h36m).is_file():  # `make bench` runs every script: skip, saying what is needed
        need = missing + ([] if Path(args.h36m).is_file() else [f"{args.h36m} (make demo-h36m)"])
        print(f"SKIPPED: needs {'; '.join(need)}: run `make compare` first or pass --prior name=path / --h36m")
        return
    body_model = load_body_model(args.body_model)
    reg = h36m_regressor_for(args.body_model, None, body_model.num_vertices)
    data = H36MEvalDataset(read_h36m_p2(args.h36m))
    n = min(args.frames, len(data))
    items = [data[i] for i in range(n)]
    batch = {k: (torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else torch.tensor([it[k] for it in items]))
             for k in items[0]}
    settings = FitSettings(**parse_settings(args.set))
    modules = {"none": KeypointFittingModule(None, body_model, reg, settings=settings)}
    pooled = replace(settings, start_pool=args.start_pool)
    for name, path in paths.items():
        modules[name] = KeypointFittingModule(load_prior(path), body_model, reg, settings=settings)
        if args.start_pool > 0:
            modules[f"{name}+pool"] = KeypointFittingModule(load_prior(path), body_model, reg, settings=pooled)
    modules["none"]._fit({k: v[:2] for k, v in batch.items()}, 0)  # warm-up
    best = dict.fromkeys(modules, float("inf"))
    result = {}
    for _ in range(args.rounds):
        for name, module in modules.items():
            t0 = time.perf_counter()
            result[name] = module._fit(batch, 0)
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"{n} frames of {args.h36m}, body model {args.body_model}, {args.threads} threads, settings {settings}")
    print(f"{'prior':12s} {'s/100 frames':>13s} {'P-MPJPE mm':>11s} {'MPJPE mm':>9s} {'iterations':>10s} "
          f"{'evals/frame':>11s}")
    for name in modules:
        r = result[name]
        print(f"{name:12s} {best[name] * 100 / n:13.2f} {float(r['p_mpjpe'].mean()):11.2f} "
              f"{float(r['mpjpe'].mean()):9.2f} {float(r['iterations'].float().mean()):10.1f} "
              f"{float(r['evaluations'].float().mean()):11.1f}")
    for gan in (n for n in modules if n.split("+")[0] == "gan_s"):
        for vposer in (n for n in modules if n.split("+")[0] == "vposer"):
            ratio = best[gan] / best[vposer]
            d = float(result[gan]["p_mpjpe"].mean() - result[vposer]["p_mpjpe"].mean())
            evals = float(result[gan]["evaluations"].float().mean() / result[vposer]["evaluations"].float().mean())
            met = ratio <= 1.0 and d <= 0
            print(f"RESULT {gan} / {vposer} fitting time {ratio:.2f} (target <= 1.0; objective evaluations "
                  f"{evals:.2f}), P-MPJPE difference {d:+.2f} mm (target <= 0): {'MET' if met else 'not met'}")


if __name__ == "__main__":
    main()
