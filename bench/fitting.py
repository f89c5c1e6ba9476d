"""Keypoint fitting: every prior's time and P-MPJPE on the same frames, and batched against one frame at a time.

Part 1 (per-prior table): fits the first `--h36m-frames` frames of an H3.6M Protocol-2 file (default: the
embedded default's synthetic file, made by `make demo-h36m`) in batches of `--batch-size` with no prior and
with each given prior, through the same code as `make eval-h36m` (KeypointFittingModule's per-batch fit,
without a Trainer), in rounds that alternate the priors so that load from other processes hits all alike;
prints seconds per 100 frames (the best round), mean P-MPJPE, mean L-BFGS iterations (camera + body stage of
the winning row), objective evaluations per frame (every row of the frame: both orientations, both stages; a
load-independent cost) and the GAN-S / VPoser time ratio (target <= 1.0 at equal or lower P-MPJPE). Prior
files default to those `make compare` trains (outputs/compare/priors/<name>/prior.pt); without them this part
is skipped, saying so. Each `--variant name:key=value,...` adds a row `<prior>+name` per prior fitted with
those settings changed, and a ratio line for every GAN-S row against every VPoser row.

Part 2 (batched against solo): both runs fit synthetic H3.6M-format frames (poses from a seeded random GAN-S
prior, open-light model, SPIN's camera); prints the speed-up and the P-MPJPE of both (target >= 15x with
per-frame results identical: P-MPJPE within 0.5 mm and the same L-BFGS iterations per frame). float64, so
that rounding does not change line-search decisions between batch sizes.

    .venv/bin/python bench/fitting.py [--h36m-frames 256] [--batch-size 64] [--rounds 3] [--threads 2]
        [--variant pool:start_pool=64] [--set body_iters=300 ftol=1e-6] [--prior gan_s=outputs/runs/gan_s/prior.pt --prior vposer=...]
        [--frames 64] [--solo 8] [--iters 30] [--skip-priors] [--skip-batching]
"""

from __future__ import annotations

import argparse
import math
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
from pose_prior.body_model.keypoints import keypoint_map_for_body_model  # noqa: E402
from pose_prior.evaluation.metrics3d import p_mpjpe, regress_h36m_joints  # noqa: E402
from pose_prior.fitting.camera import perspective_project  # noqa: E402
from pose_prior.fitting.keypoint_fit import FitSettings, KeypointBody, fit_keypoints  # noqa: E402
from pose_prior.priors import GANPrior, load_prior  # noqa: E402
from pose_prior.priors.gan.networks import PoseGenerator  # noqa: E402
from pose_prior.priors.latent import make_latent  # noqa: E402
from pose_prior.rotations import axis_angle_to_matrix, body_pose_to_matrices  # noqa: E402

TARGET_SPEEDUP = 15.0  # batched over one frame at a time

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


def add_prior_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--h36m", default="outputs/demo/h36m/h36m_valid_protocol2.npz")
    ap.add_argument("--body-model", default="open")
    ap.add_argument("--h36m-frames", type=int, default=256, help="frames of the H3.6M file in the per-prior table")
    ap.add_argument("--batch-size", type=int, default=64, help="frames per fit (eval-h36m's data.batch_size)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the per-prior table")
    ap.add_argument("--prior", action="append", default=[], help="name=path (repeatable); default: make compare's")
    ap.add_argument("--set", nargs="*", default=[], help="FitSettings overrides, e.g. body_iters=300 ftol=1e-6")
    ap.add_argument("--variant", action="append", default=[],
                    help="name:key=value,... (repeatable): also fit every prior with these FitSettings overrides, "
                         "as row <prior>+name, e.g. pool:start_pool=64")


def prior_table(args: argparse.Namespace) -> None:
    """Part 1: fitting time per 100 frames and P-MPJPE of none and every prior on the same H3.6M frames."""
    torch.set_num_threads(args.threads)
    paths = dict(p.split("=", 1) for p in args.prior) if args.prior else dict(DEFAULT_PRIORS)
    missing = [f"{n}: {p}" for n, p in paths.items() if not Path(p).is_file()]
    if missing or not Path(args.h36m).is_file():  # `make bench` runs every script: skip, saying what is needed
        need = missing + ([] if Path(args.h36m).is_file() else [f"{args.h36m} (make demo-h36m)"])
        print(f"per-prior table SKIPPED: needs {'; '.join(need)}: run `make compare` first or pass --prior name=path / --h36m")
        return
    body_model = load_body_model(args.body_model)
    reg = h36m_regressor_for(args.body_model, None, body_model.num_vertices)
    data = H36MEvalDataset(read_h36m_p2(args.h36m))
    n = min(args.h36m_frames, len(data))
    batches = []
    for lo in range(0, n, args.batch_size):  # eval-h36m's batches
        items = [data[i] for i in range(lo, min(lo + args.batch_size, n))]
        batches.append({k: (torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k])
                            else torch.tensor([it[k] for it in items])) for k in items[0]})
    settings = FitSettings(**parse_settings(args.set))
    variants = {"": settings}
    for spec in args.variant:  # name:key=value,key=value
        label, _, items = spec.partition(":")
        variants[f"+{label}"] = replace(settings, **parse_settings(items.split(",")))
    modules = {"none": KeypointFittingModule(None, body_model, reg, settings=settings)}
    for name, path in paths.items():
        prior = load_prior(path).to(body_model.dtype)  # as eval-h36m loads it (the GMM file is float64)
        for label, variant in variants.items():
            modules[f"{name}{label}"] = KeypointFittingModule(prior, body_model, reg, settings=variant)
    modules["none"]._fit({k: v[:2] for k, v in batches[0].items()}, 0)  # warm-up
    best = dict.fromkeys(modules, float("inf"))
    result = {}
    for _ in range(args.rounds):
        for name, module in modules.items():
            t0 = time.perf_counter()
            outs = [module._fit(b, 0) for b in batches]
            best[name] = min(best[name], time.perf_counter() - t0)
            result[name] = {k: torch.cat([o[k] for o in outs]) for k in ("p_mpjpe", "mpjpe", "iterations",
                                                                          "evaluations")}
    print(f"{n} frames of {args.h36m} in batches of {args.batch_size}, body model {args.body_model}, "
          f"{args.threads} threads, best of {args.rounds} rounds, settings {settings}")
    for label, variant in variants.items():
        if label:
            changed = {k: v for k, v in vars(variant).items() if v != getattr(settings, k)}
            print(f"  {label}: {changed}")
    print(f"{'prior':22s} {'s/100 frames':>13s} {'P-MPJPE mm':>11s} {'MPJPE mm':>9s} {'iterations':>10s} "
          f"{'evals/frame':>11s}")
    for name in modules:
        r = result[name]
        print(f"{name:22s} {best[name] * 100 / n:13.2f} {float(r['p_mpjpe'].mean()):11.2f} "
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


def problem(n: int, body_model, prior):
    g = torch.Generator().manual_seed(0)
    pose = prior.decode(prior.sample(n, generator=g)).detach()
    yaw = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * math.radians(60)
    aa = torch.zeros(n, 3, dtype=torch.float64)
    aa[:, 1] = yaw
    orient = axis_angle_to_matrix(aa) @ axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    transl = torch.tensor([0.0, 0.1, 45.0], dtype=torch.float64).expand(n, 3)
    kb = KeypointBody(body_model, keypoint_map_for_body_model(body_model, "spin24"))
    uv = perspective_project(kb(orient, body_pose_to_matrices(pose), transl), torch.zeros_like(transl), 5000.0, (112.0, 112.0))
    kp = torch.cat([uv, kb.available[None, :, None].expand(n, -1, 1).double()], -1)
    return kp, pose, orient


def errors(body_model, reg, res, pose, orient) -> torch.Tensor:
    from pose_prior.rotations import matrix_to_axis_angle

    fit = regress_h36m_joints(body_model(res.body_pose, global_orient=res.global_orient).vertices, reg)
    gt = regress_h36m_joints(body_model(pose, global_orient=matrix_to_axis_angle(orient)).vertices, reg)
    return p_mpjpe(fit - fit[:, :1], gt - gt[:, :1]) * 1000.0


def batching(args: argparse.Namespace) -> None:
    """Part 2: batched keypoint fitting against the same frames fitted one at a time."""
    torch.set_num_threads(1)
    body_model = load_body_model("open-light", dtype=torch.float64)  # float64: batched == solo
    torch.manual_seed(123)
    gen = PoseGenerator()
    with torch.no_grad():
        gen.bodyprior_dec_out.weight.mul_(3.0)
        gen.bodyprior_dec_out.bias.copy_(torch.tensor([1.0, 0, 0, 1, 0, 0]).repeat(21))
    prior = GANPrior(gen, make_latent("S", 32)).double()
    reg = torch.as_tensor(h36m_regressor_for("open-light", None, body_model.num_vertices))
    kp, pose, orient = problem(args.frames, body_model, prior)
    settings = FitSettings(body_iters=args.iters, camera_iters=10)
    kb = KeypointBody(body_model, keypoint_map_for_body_model(body_model, "spin24"))
    fit_keypoints(prior, body_model, kp[:2], "spin24", (112.0, 112.0), settings, keypoint_body=kb)  # warm-up

    t0 = time.perf_counter()
    batched = fit_keypoints(prior, body_model, kp, "spin24", (112.0, 112.0), settings, keypoint_body=kb)
    t_batch = time.perf_counter() - t0
    n_solo = min(args.solo, args.frames)
    solo = []
    t0 = time.perf_counter()
    for i in range(n_solo):
        solo.append(fit_keypoints(prior, body_model, kp[i:i + 1], "spin24", (112.0, 112.0), settings, keypoint_body=kb))
    t_solo = (time.perf_counter() - t0) / n_solo * args.frames  # extrapolated to all frames
    e_batch = errors(body_model, reg, batched, pose, orient)
    from pose_prior.fitting.keypoint_fit import FitResult

    solo_res = FitResult(body_pose=torch.cat([r.body_pose for r in solo]), latent=None,
                         global_orient=torch.cat([r.global_orient for r in solo]), transl=torch.cat([r.transl for r in solo]))
    e_solo = errors(body_model, reg, solo_res, pose[:n_solo], orient[:n_solo])
    fps_b, fps_s = args.frames / t_batch, args.frames / t_solo
    print(f"frames {args.frames} (solo: {n_solo}, time extrapolated), body_iters {args.iters}, light open model, GAN-S")
    print(f"batched : {fps_b:8.1f} frames/s   P-MPJPE {e_batch[:n_solo].mean():6.2f} mm (same frames as solo), "
          f"{e_batch.mean():6.2f} mm (all)")
    print(f"solo    : {fps_s:8.1f} frames/s   P-MPJPE {e_solo.mean():6.2f} mm")
    diff = float((e_batch[:n_solo] - e_solo).abs().max())
    pose_diff = float((batched.body_pose[:n_solo] - solo_res.body_pose).abs().max())
    same_iters = all(int(r.iterations[0]) == int(batched.iterations[i]) for i, r in enumerate(solo))
    print(f"mean P-MPJPE difference on the same frames: {float((e_batch[:n_solo] - e_solo).mean()):+.4f} mm; "
          f"max |body pose difference| {pose_diff:.2e} rad; same iterations per frame: {same_iters}")
    speedup = fps_b / fps_s
    ok = speedup >= TARGET_SPEEDUP and diff <= 0.5 and same_iters
    print(f"RESULT speed-up: {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x); max per-frame P-MPJPE difference "
          f"{diff:.4f} mm (target <= 0.5): {'PASS' if ok else 'FAIL'}")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_prior_arguments(parser)
    parser.add_argument("--frames", type=int, default=64, help="frames fitted in one batch (eval-h36m batch_size: 64)")
    parser.add_argument("--solo", type=int, default=8, help="frames fitted one at a time (time extrapolated)")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--skip-priors", action="store_true", help="only the batched / solo part")
    parser.add_argument("--skip-batching", action="store_true", help="only the per-prior table")
    args = parser.parse_args()
    if not args.skip_priors:
        prior_table(args)
    if not args.skip_batching:
        batching(args)


if __name__ == "__main__":
    main()
