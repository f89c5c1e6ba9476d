"""Batched per-sample L-BFGS vs the same optimiser one problem at a time, vs scipy L-BFGS-B in a loop.

256 independent 40-d Rosenbrock problems (float64). Prints times, ratios and the largest difference
between the batched and the solo solutions (should be ~0: samples do not interact), and the number of
objective calls of the batched run (iterations are pipelined per sample: calls = max per-sample evaluations).
Run: .venv/bin/python bench/lbfgs_batched.py [--n 256] [--dim 40] [--solo-n 64] [--scipy-n 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize
import torch

from pose_prior.fitting.lbfgs import batched_lbfgs


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(-1)


def rosenbrock_np(x: np.ndarray) -> tuple[float, np.ndarray]:
    t = torch.from_numpy(x[None]).requires_grad_(True)
    f = rosenbrock(t).sum()
    (g,) = torch.autograd.grad(f, t)
    return float(f.detach()), g[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--dim", type=int, default=40)
    parser.add_argument("--solo-n", type=int, default=64, help="problems solved one at a time (time extrapolated)")
    parser.add_argument("--scipy-n", type=int, default=64, help="problems for the scipy loop (time extrapolated)")
    parser.add_argument("--max-iter", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(args.n, args.dim, generator=g, dtype=torch.float64) * 4 - 2
    kw = dict(max_iter=args.max_iter, ftol=1e-12, gtol=1e-8)

    t0 = time.perf_counter()
    batched = batched_lbfgs(rosenbrock, x0, **kw)
    t_batched = time.perf_counter() - t0

    n_solo = min(args.solo_n, args.n)
    t0 = time.perf_counter()
    solo = torch.cat([batched_lbfgs(rosenbrock, x0[i : i + 1], **kw).x for i in range(n_solo)])
    t_solo = (time.perf_counter() - t0) * args.n / n_solo

    n_sp = min(args.scipy_n, args.n)
    t0 = time.perf_counter()
    sp = [scipy.optimize.minimize(rosenbrock_np, x0[i].numpy(), jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=args.max_iter, ftol=1e-12, gtol=1e-8))
          for i in range(n_sp)]
    t_scipy = (time.perf_counter() - t0) * args.n / n_sp

    f_sp = np.array([r.fun for r in sp])
    f_ours = batched.f[:n_sp].numpy()
    same_min = np.abs(f_ours - f_sp) < 1e-6
    print(f"{args.n} x {args.dim}-d Rosenbrock, float64, 1 thread")
    print(f"batched L-BFGS        : {t_batched:7.2f} s  (iterations max {int(batched.iterations.max())}, "
          f"converged {int(batched.converged.sum())}/{args.n})")
    print(f"objective calls       : {batched.calls} (pipelined iterations: = max per-sample evaluations "
          f"{int(batched.evaluations.max())}; per-sample evaluations sum {int(batched.evaluations.sum())}, "
          f"mean {float(batched.evaluations.float().mean()):.0f})")
    print(f"same optimiser, solo  : {t_solo:7.2f} s{f' (extrapolated from {n_solo})' if n_solo < args.n else ''}"
          f"  -> batched is {t_solo / t_batched:5.1f}x faster")
    print(f"scipy L-BFGS-B loop   : {t_scipy:7.2f} s{f' (extrapolated from {n_sp})' if n_sp < args.n else ''}"
          f"  -> batched is {t_scipy / t_batched:5.1f}x faster")
    print(f"max |batched - solo|  : {float((batched.x[:n_solo] - solo).abs().max()):.3e} (over {n_solo} problems)")
    print(f"same minimum as scipy (|df| < 1e-6): {int(same_min.sum())}/{n_sp}; "
          f"at the global minimum (f < 1e-8): ours {int((batched.f < 1e-8).sum())}/{args.n}, "
          f"scipy {int((f_sp < 1e-8).sum())}/{n_sp}")


if __name__ == "__main__":
    main()
