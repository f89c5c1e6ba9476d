"""GAN training throughput: pose_prior.priors.gan.training.train_step vs the authors-style loop, in one run.

One iteration = 10 discriminator steps + 1 generator step, batch 1024, Adam lr 2e-4 betas (0.5, 0.999),
real batch = random rotations (data loading excluded from both). Both sides use the same networks: the
whole-pose MLP width is the authors' public ganS config (64) unless --disc-hidden says otherwise (their
code's default and HMR's is 1024). The two implementations alternate in short blocks so that load from
other processes hits both alike.

    .venv/bin/python bench/train_throughput.py [--iters 20] [--threads 2] [--batch 1024] [--disc-hidden 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import roma
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.authors_reference import AuthorsDiscriminator, AuthorsGenerator, authors_train_step  # noqa: E402
from pose_prior.priors.gan.networks import PoseDiscriminator, PoseGenerator  # noqa: E402
from pose_prior.priors.gan.training import make_optimizers, train_step  # noqa: E402
from pose_prior.priors.latent import make_latent  # noqa: E402


def discriminator_macs(D: PoseDiscriminator) -> int:
    """Multiply-adds per pose: the shared per-joint layers run once per joint, heads and MLP once."""
    shared = D.joint_fc1.weight.numel() + D.joint_fc2.weight.numel()
    mlp = sum(m.weight.numel() for m in D.pose_mlp if isinstance(m, torch.nn.Linear))
    return D.num_joints * shared + D.head_weight.numel() + mlp


def iteration_gflop(batch: int, d_steps: int, d_macs: int, g_macs: int) -> float:
    """Approximate FLOPs of one iteration: 2 per MAC forward, 4 per MAC backward (weights + inputs)."""
    d_step = 2 * batch * (2 + 4) * d_macs  # real + fake, forward + backward
    g_fakes = d_steps * batch * 2 * g_macs
    g_step = batch * 6 * g_macs + batch * 6 * d_macs
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    k, B = args.d_steps, args.batch
    latent = make_latent("S", 32)
    real = roma.random_rotmat((k * B, 21))  # (k*B, 21, 3, 3)
    real_chunks = real.reshape(k * B, 21, 9).chunk(k)

    G, D = PoseGenerator(), PoseDiscriminator(hidden=args.disc_hidden)
    g_opt, d_opt = make_optimizers(G, D)
    AG, AD = AuthorsGenerator(), AuthorsDiscriminator(hidden_poseall=args.disc_hidden)
    ag_opt = torch.optim.Adam(AG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ad_opt = torch.optim.Adam(AD.parameters(), lr=2e-4, betas=(0.5, 0.999))

    runs = {
        "ours": lambda: train_step(G, D, g_opt, d_opt, real, latent, d_steps=k),
        "authors": lambda: authors_train_step(AG, AD, ag_opt, ad_opt, real_chunks, latent),
    }
    for fn in runs.values():
        for _ in range(args.warmup):
            fn()
    elapsed = dict.fromkeys(runs, 0.0)
    done = dict.fromkeys(runs, 0)
    while min(done.values()) < args.iters:
        for name, fn in runs.items():
            n = min(args.block, args.iters - done[name])
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            elapsed[name] += time.perf_counter() - t0
            done[name] += n
    rate = {name: done[name] / elapsed[name] for name in runs}
    g_macs = sum(m.weight.numel() for m in G.modules() if isinstance(m, torch.nn.Linear))
    gflop = iteration_gflop(B, k, discriminator_macs(D), g_macs)
    print(
        f"iteration ~{gflop:.1f} GFLOP (1 G step + {k} D steps, batch {B}, whole-pose width {args.disc_hidden}, "
        f"{args.threads} threads)"
    )
    for name in runs:
        print(f"  {name:8s} {rate[name]:.3f} it/s  ({rate[name] * gflop:.0f} GFLOP/s)")
    print(f"RESULT ours {rate['ours']:.3f} it/s, authors-style {rate['authors']:.3f} it/s, ratio {rate['ours'] / rate['authors']:.2f}x")


if __name__ == "__main__":
    main()
