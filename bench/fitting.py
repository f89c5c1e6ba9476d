"""Frames per second of batched keypoint fitting vs fitting the same frames one at a time (same settings).

Both runs fit synthetic H3.6M-format frames (AMASS-like poses from a seeded random GAN-S prior, open-light
model, SPIN's camera); prints the speed-up and the P-MPJPE of both (target, issue 15: >= 15x with per-frame
results identical: P-MPJPE within 0.5 mm and the same L-BFGS iterations per frame). float64, so that rounding
does not change line-search decisions between batch sizes.
Usage: python bench/fitting.py [--frames 64] [--solo 8] [--iters 30]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from pose_prior.body_model import load_body_model
from pose_prior.body_model.h36m_regressor import h36m_regressor_for
from pose_prior.body_model.keypoints import keypoint_map_for_body_model
from pose_prior.evaluation.metrics3d import p_mpjpe, regress_h36m_joints
from pose_prior.fitting.camera import perspective_project
from pose_prior.fitting.keypoint_fit import FitSettings, KeypointBody, fit_keypoints
from pose_prior.priors import GANPrior
from pose_prior.priors.gan.networks import PoseGenerator
from pose_prior.priors.latent import make_latent
from pose_prior.rotations import axis_angle_to_matrix, body_pose_to_matrices

TARGET_SPEEDUP = 15.0  # issue 15: batched over one frame at a time


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="frames fitted in one batch (eval-h36m batch_size: 64)")
    parser.add_argument("--solo", type=int, default=8, help="frames fitted one at a time (time extrapolated)")
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
