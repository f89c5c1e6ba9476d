"""Body-model forward for 1024 bodies (neutral shape, 63-d pose): BodyModel vs smplx's own forward pass.

Prints milliseconds per 1024 bodies and the speed-up over smplx measured in the same run.
    python bench/body_model_forward.py [--models open-light open] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from scipy.spatial.transform import Rotation

from pose_prior.body_model import load_body_model
from pose_prior.body_model.loading import build_smplx_model, open_model_paths, read_model_arrays


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["open-light", "open"])
    parser.add_argument("--model-type", default="smpl")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pose = 0.4 * torch.randn(args.batch, 63)
    full = torch.cat([pose, torch.zeros(args.batch, 6)], 1) if args.model_type == "smpl" else pose
    mats = torch.from_numpy(Rotation.from_rotvec(full.reshape(-1, 3).numpy()).as_matrix()).float()
    mats = mats.reshape(args.batch, -1, 3, 3)
    for name in args.models:
        model = load_body_model(name, args.model_type)
        reference = build_smplx_model(read_model_arrays(open_model_paths(name, args.model_type)[0]),
                                      args.model_type, 10, torch.float32, keep_posedirs=True)
        kwargs = {}
        if args.model_type == "smplh":
            eye = torch.eye(3).expand(args.batch, 15, 3, 3)
            kwargs = dict(left_hand_pose=eye, right_hand_pose=eye)
        with torch.no_grad():
            ours = best_time(lambda m=model: m(pose), args.repeats)
            base = best_time(lambda r=reference, k=kwargs: r(body_pose=mats, **k), args.repeats)
            betas = torch.zeros(args.batch, 10)
            ours_betas = best_time(lambda m=model, b=betas: m(pose, betas=b), args.repeats)
        print(f"{name}-{args.model_type} V={model.num_vertices} B={args.batch} threads={args.threads}: "
              f"BodyModel {ours * 1e3:.1f} ms (with betas {ours_betas * 1e3:.1f} ms), "
              f"smplx {base * 1e3:.1f} ms, speed-up x{base / ours:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
