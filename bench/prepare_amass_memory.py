"""Peak memory of AMASS preparation on 1M synthetic frames, against the naive in-memory concatenation.

Writes a synthetic AMASS-format tree (100 sequences x 10k frames) in a temp dir, then measures, each in a
fresh subprocess, the peak RSS (ru_maxrss) of:
  ours:  prepare_amass (two passes, rows written into a preallocated .npy, one source file in memory)
  naive: load every file's body pose into a list, np.concatenate, np.save
Prints both, their ratio, preparation speed, and whether ours stays under the 2 GB target.
Every step, the generator included, runs in its own subprocess and this launcher imports only the
standard library: on Linux ru_maxrss survives fork/exec, so a child's figure starts at its parent's RSS.
Usage: python bench/prepare_amass_memory.py [--frames-per-sequence 10000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

GENERATE = """
import json, sys
from datamodules.amass.demo import write_demo_amass
files = write_demo_amass(sys.argv[1], sequences_per_subject=int(sys.argv[2]), subjects_per_dataset=2,
                         frames_per_sequence=int(sys.argv[3]), framerate=120.0, seed=0)
print(json.dumps({"files": len(files), "bytes": sum(f.stat().st_size for f in files)}))
"""

IMPORTS_ONLY = """
import json, resource
import numpy as np
from datamodules.amass import prepare
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

OURS = """
import json, resource, sys, time
from datamodules.amass.prepare import prepare_amass
from experiments.schemas.data import DEFAULT_ALIASES, DEFAULT_SPLITS
t = time.perf_counter()
report = prepare_amass(sys.argv[1], sys.argv[2], DEFAULT_SPLITS, DEFAULT_ALIASES)
seconds = time.perf_counter() - t
frames = sum(s.frames for s in report.splits.values())
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "seconds": seconds,
                  "frames": frames, "skipped": len(report.skipped)}))
"""

NAIVE = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
t = time.perf_counter()
parts = []
for path in sorted(Path(sys.argv[1]).rglob("*.npz")):
    if path.name.endswith("_poses.npz"):
        with np.load(path) as npz:
            parts.append(npz["poses"][:, 3:66].astype(np.float32))
    elif path.name.endswith("_stageii.npz"):
        with np.load(path) as npz:
            parts.append(npz["pose_body"].astype(np.float32))
everything = np.concatenate(parts)
np.save(Path(sys.argv[2]) / "naive.npy", everything)
seconds = time.perf_counter() - t
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "seconds": seconds,
                  "frames": int(everything.shape[0])}))
"""


def _measure(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, check=True, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-sequence", type=int, default=10_000)
    parser.add_argument("--sequences-per-subject", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="amass_bench_"))
    try:
        t = time.perf_counter()
        made = _measure(GENERATE, str(tmp / "amass"), str(args.sequences_per_subject), str(args.frames_per_sequence))
        total = made["files"] * args.frames_per_sequence
        print(f"synthetic tree: {made['files']} files, {total:,} frames, {made['bytes'] / 2**30:.2f} GiB "
              f"in {time.perf_counter() - t:.1f} s")
        (tmp / "naive").mkdir()
        base = _measure(IMPORTS_ONLY)
        ours = _measure(OURS, str(tmp / "amass"), str(tmp / "prepared"))
        naive = _measure(NAIVE, str(tmp / "amass"), str(tmp / "naive"))
        again = _measure(OURS, str(tmp / "amass"), str(tmp / "prepared"))  # the no-op re-run
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    mib = 1024.0
    print(f"{'':28s} {'peak RSS':>10s} {'time':>8s} {'frames/s':>12s}")
    print(f"{'interpreter + imports':28s} {base['maxrss_kb'] / mib:8.0f} MiB")
    print(f"{'prepare_amass (ours)':28s} {ours['maxrss_kb'] / mib:8.0f} MiB {ours['seconds']:7.1f}s "
          f"{ours['frames'] / ours['seconds']:12,.0f}")
    print(f"{'naive concatenate (baseline)':28s} {naive['maxrss_kb'] / mib:8.0f} MiB {naive['seconds']:7.1f}s "
          f"{naive['frames'] / naive['seconds']:12,.0f}")
    print(f"{'prepare_amass re-run (no-op)':28s} {again['maxrss_kb'] / mib:8.0f} MiB {again['seconds']:7.2f}s")
    assert ours["frames"] == naive["frames"] == total and ours["skipped"] == 0
    ratio = naive["maxrss_kb"] / ours["maxrss_kb"]
    extra = (naive["maxrss_kb"] - base["maxrss_kb"]) / max(ours["maxrss_kb"] - base["maxrss_kb"], 1)
    print(f"ratio naive/ours peak RSS: {ratio:.1f}x (memory above the interpreter + imports: {extra:.1f}x)")
    print(f"target peak < 2 GiB: {'PASS' if ours['maxrss_kb'] < 2 * mib * mib else 'FAIL'} "
          f"({ours['maxrss_kb'] / mib / mib:.2f} GiB for {total:,} frames)")


if __name__ == "__main__":
    main()
