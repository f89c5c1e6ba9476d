"""pose-prior-convert-smpl IN.pkl OUT.npz: a licensed SMPL/SMPL-H .pkl (chumpy inside) -> plain .npz."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse

from pose_prior.body_model.loading import REQUIRED_KEYS
from pose_prior.io import atomic_savez
from pose_prior.safe_pickle import restricted_load_dict


def pkl_to_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every numeric array (sparse made dense) and string of the pickled model dict."""
    loaded = restricted_load_dict(path, "model arrays")
    arrays = {}
    for key, value in loaded.items():
        if scipy.sparse.issparse(value):
            value = value.toarray()
        arr = np.asarray(value)
        if arr.dtype == object:
            continue  # e.g. nested metadata; not model data smplx reads
        arrays[str(key)] = arr
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; not an SMPL/SMPL-H model file")
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pose-prior-convert-smpl", description=__doc__)
    parser.add_argument("input", type=Path, help="SMPL / SMPL-H .pkl (e.g. basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)")
    parser.add_argument("output", type=Path, help="output .npz (plain numpy, loads without pickle)")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        print(f"error: {args.input} does not exist", file=sys.stderr)
        return 2
    try:
        arrays = pkl_to_arrays(args.input)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    atomic_savez(args.output, compressed=True, **arrays)
    print(f"wrote {args.output} ({', '.join(sorted(arrays))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
