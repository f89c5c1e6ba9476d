"""Streaming exact recall (FAISS shortlist + coarse lower bounds + exact re-rank) vs chunked brute force.

Generated bodies come from random plausible body poses through the light open body model (the
articulated stand-in if its asset is missing), produced and searched chunk by chunk. Brute force runs
on the same chunks for a subset of the references (all generated bodies), which gives the agreement rate
on exactly the same inputs; its time is extrapolated linearly in references (brute force costs the same
per pair). Both use the same number of torch threads. Also prints an estimate for the paper's 6M x 10k.

    python bench/coverage.py                                  # 200k generated x 2k references
    python bench/coverage.py --generated 20000 --references 500 --brute-references 20   # CI size
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from pose_prior.evaluation.nearest import StreamingNearestMesh, brute_force_nearest
from pose_prior.evaluation.nearest.exact import NO_INDEX, merge_nearest_
from pose_prior.evaluation.nearest.synthetic_bodies import load_pose_to_vertices, posed_bodies


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generated", type=int, default=200_000)
    p.add_argument("--references", type=int, default=2_000)
    p.add_argument("--chunk", type=int, default=10_000, help="generated bodies produced and searched at once")
    p.add_argument("--brute-references", type=int, default=48, help="references also searched by brute force")
    p.add_argument("--levels", default="8,128", help="vertex groups per coarse-bound level, coarsest first")
    p.add_argument("--shortlist-k", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both methods (machine is shared)")
    p.add_argument("--model", default="open-light")
    p.add_argument("--gpu-factor", type=float, default=30.0,
                   help="assumed throughput of one GPU over this CPU run, for the labelled estimate")
    p.add_argument("--paper-generated", type=int, default=6_000_000)
    p.add_argument("--paper-references", type=int, default=10_000)
    return p.parse_args(argv)


def hms(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pose_to_vertices = load_pose_to_vertices(args.model)
    model_name = getattr(pose_to_vertices, "name", "articulated stand-in")
    references = posed_bodies(args.references, seed=1, pose_to_vertices=pose_to_vertices)
    sub = min(args.brute_references, args.references)
    brute_refs = references[:sub]
    levels = tuple(int(x) for x in args.levels.split(","))

    t0 = time.perf_counter()
    stream = StreamingNearestMesh(references, levels=levels, shortlist_k=args.shortlist_k)
    t_setup = time.perf_counter() - t0
    brute_dist = torch.full((sub,), float("inf"))
    brute_index = torch.full((sub,), NO_INDEX, dtype=torch.long)
    t_gen = t_search = t_brute = 0.0
    for offset in range(0, args.generated, args.chunk):
        n = min(args.chunk, args.generated - offset)
        t0 = time.perf_counter()
        chunk = posed_bodies(n, seed=1000 + offset, pose_to_vertices=pose_to_vertices)
        t1 = time.perf_counter()
        stream.update(chunk, offset)
        t2 = time.perf_counter()
        d, i = brute_force_nearest(brute_refs, chunk, chunk=2048)
        merge_nearest_(brute_dist, brute_index, d, i + offset)
        t3 = time.perf_counter()
        t_gen, t_search, t_brute = t_gen + t1 - t0, t_search + t2 - t1, t_brute + t3 - t2
        print(f"  {offset + n:>9,d} generated: search {t_search:7.1f} s, brute ({sub} refs) {t_brute:7.1f} s",
              file=sys.stderr, flush=True)

    dist, index = stream.compute()
    same = (index[:sub] == brute_index) & ((dist[:sub] - brute_dist).abs() <= 1e-6)
    pairs = args.references * args.generated
    search_total = t_setup + t_search
    brute_pairs_per_s = sub * args.generated / t_brute
    brute_full = pairs / brute_pairs_per_s
    speedup = brute_full / search_total
    paper_pairs = args.paper_generated * args.paper_references
    est_search = search_total * paper_pairs / pairs  # linear in pairs: conservative, pruning improves with M
    est_brute = paper_pairs / brute_pairs_per_s
    est_gen = t_gen * args.paper_generated / args.generated
    stats = stream.stats.as_dict()

    print(f"# Coverage nearest neighbours (Eq. 5), {model_name}, V={references.shape[1]}, "
          f"{args.threads} torch thread(s), chunk {args.chunk:,d}")
    print(f"generated x references        : {args.generated:,d} x {args.references:,d} ({pairs:.2e} pairs)")
    print(f"exact streaming search        : {hms(search_total)} ({args.generated / search_total:,.0f} generated/s)")
    print(f"brute force (measured on {sub} refs, extrapolated linearly to {args.references:,d}): "
          f"{hms(brute_full)} ({args.generated / brute_full:,.1f} generated/s, {brute_pairs_per_s:,.0f} pairs/s)")
    print(f"speed-up                      : {speedup:.1f}x")
    print(f"agreement with brute force    : {int(same.sum())}/{sub} = {float(same.float().mean()):.1%} "
          "(same nearest index and distance within 1e-3 mm)")
    print(f"recall (nearest generated)    : mean {dist.mean() * 1e3:.1f} mm, median {dist.median() * 1e3:.1f} mm, "
          f"std {dist.std() * 1e3:.1f} mm")
    print(f"pairs surviving each bound    : {stats['survivors_per_level']} of {stats['pairs']:.2e}; "
          f"shortlisted {stats['shortlisted']:,d}, exact re-ranked {stats['exact']:,d}")
    print(f"body generation (not searched): {hms(t_gen)} ({args.generated / t_gen:,.0f} bodies/s)")
    print(f"## Estimate for the paper's {args.paper_generated:,d} generated x {args.paper_references:,d} references "
          f"(linear in pairs from this run)")
    print(f"this CPU ({args.threads} thread(s)) : exact search {hms(est_search)}, brute force {hms(est_brute)}, "
          f"body generation {hms(est_gen)}")
    print(f"one GPU (ESTIMATE, assumed {args.gpu_factor:.0f}x this CPU run): exact search "
          f"{hms(est_search / args.gpu_factor)}, brute force {hms(est_brute / args.gpu_factor)}")


if __name__ == "__main__":
    main()
