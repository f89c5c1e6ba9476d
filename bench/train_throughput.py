"""GAN training throughput: our iterations vs the same procedures written as the authors wrote them, in one run.

The default procedure (`authors`: 1 generator step, then 10 discriminator steps on the same real batch and
fakes) is timed on both sides: `authors_step` against `bench.authors_reference.authors_procedure_step`
(per-joint Python heads, 1x1 convolutions, separate real and fake passes, discriminator weight gradients in
the generator step). The `fresh` variant (10 discriminator steps with fresh real and fake sub-batches, then
the generator step) is timed beside it against `authors_train_step`. Batch 1024, Adam lr 2e-4 betas (0.5,
0.999), random rotations as real poses (data loading excluded). Whole-pose MLP width: the authors' public
ganS config (64) unless --disc-hidden says otherwise. The implementations alternate in short blocks so
that load from other processes hits all alike. On a loaded machine, `--threads 1 --clock cpu` times each
block in this process's CPU time instead of wall time, so waiting for a core is not counted (with more
than one thread, CPU time would add the threads' time and their spinning: use wall time there).

    .venv/bin/python bench/train_throughput.py [--iters 20] [--threads 2] [--batch 1024] [--disc-hidden 64]
                                               [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import roma
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.authors_reference import (  # noqa: E402
    AuthorsDiscriminator,
    AuthorsGenerator,
    authors_procedure_step,
    authors_train_step,
)
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator  # noqa: E402
from pose_prior.priors.gan.training import authors_step, fresh_step, make_optimizers  # noqa: E402
from pose_prior.priors.latent import make_latent  # noqa: E402


def discriminator_macs(D: PoseDiscriminator) -> int:
    """Multiply-adds per pose: the shared per-joint layers run once per joint, heads and MLP once."""
    shared = D.joint_fc1.weight.numel() + D.joint_fc2.weight.numel()
    mlp = sum(m.weight.numel() for m in D.pose_mlp if isinstance(m, torch.nn.Linear))
    return D.num_joints * shared + D.head_weight.numel() + mlp


def iteration_gflop(procedure: str, batch: int, d_steps: int, d_macs: int, g_macs: int) -> float:
    """Approximate FLOPs of one iteration: 2 per MAC forward, 4 per MAC backward (weights + inputs)."""
    d_step = 2 * batch * (2 + 4) * d_macs  # real + fake, forward + backward
    g_step = batch * 6 * g_macs + batch * 6 * d_macs
    g_fakes = 0 if procedure == "authors" else d_steps * batch * 2 * g_macs  # fresh: no-grad fakes per D step
    return (d_steps * d_step + g_fakes + g_step) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20, help="timed iterations per implementation")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--block", type=int, default=5, help="iterations per alternating block")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--d-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--disc-hidden", type=int, default=64, help="whole-pose MLP width (authors' config: 64)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time (for --threads 1 on a loaded machine)")
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        ap.error(f"--clock cpu needs --threads 1 (CPU time adds up all threads), got --threads {args.threads}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    k, B = args.d_steps, args.batch
    latent = make_latent("S", 32)
    real = roma.random_rotmat((k * B, 21))  # (k*B, 21, 3, 3): k batches for fresh, the first for authors
    real_chunks = real.reshape(k * B, 21, 9).chunk(k)

    G, D = PoseGenerator(), PoseDiscriminator(hidden=args.disc_hidden)
    g_opt, d_opt = make_optimizers(G, D)
    AG, AD = AuthorsGenerator(), AuthorsDiscriminator(hidden_poseall=args.disc_hidden)
    ag_opt = torch.optim.Adam(AG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ad_opt = torch.optim.Adam(AD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    w = {"joint_weight": 21.0, "pose_weight": 1.0}

    runs = {
        "authors/ours": lambda: authors_step(G, D, g_opt, d_opt, real[:B], latent, d_steps=k, **w),
        "authors/theirs": lambda: authors_procedure_step(AG, AD, ag_opt, ad_opt, real_chunks[0], latent, d_steps=k),
        "fresh/ours": lambda: fresh_step(G, D, g_opt, d_opt, real, latent, d_steps=k, **w),
        "fresh/theirs": lambda: authors_train_step(AG, AD, ag_opt, ad_opt, real_chunks, latent),
    }
    for fn in runs.values():
        for _ in range(args.warmup):
            fn()
    elapsed = dict.fromkeys(runs, 0.0)
    done = dict.fromkeys(runs, 0)
    while min(done.values()) < args.iters:
        for name, fn in runs.items():
            n = min(args.block, args.iters - done[name])
            t0 = clock()
            for _ in range(n):
                fn()
            elapsed[name] += clock() - t0
            done[name] += n
    rate = {name: done[name] / elapsed[name] for name in runs}
    g_macs = sum(m.weight.numel() for m in G.modules() if isinstance(m, torch.nn.Linear))
    print(f"batch {B}, {k} D steps, whole-pose width {args.disc_hidden}, {args.threads} threads, "
          f"{args.clock} clock")
    for procedure in ("authors", "fresh"):
        gflop = iteration_gflop(procedure, B, k, discriminator_macs(D), g_macs)
        for side in ("ours", "theirs"):
            r = rate[f"{procedure}/{side}"]
            print(f"  {procedure:7s} {side:6s} {r:7.3f} it/s  (~{gflop:.1f} GFLOP/it, {r * gflop:.0f} GFLOP/s)")
    ratio = rate["authors/ours"] / rate["authors/theirs"]
    fresh = rate["fresh/ours"] / rate["fresh/theirs"]
    print(f"RESULT authors procedure: ours {rate['authors/ours']:.3f} it/s, authors-style {rate['authors/theirs']:.3f} "
          f"it/s, ratio {ratio:.2f}x (target >= 3x); fresh variant ratio {fresh:.2f}x")


if __name__ == "__main__":
    main()
