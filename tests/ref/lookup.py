#!/usr/bin/python3
"""Independent check of distributed lookup outputs dumped by lookup_check --dump DIR.

Usage: lookup.py DIR   -> for every DIR/caseNN.meta: recompute each token's
sum_i w_i * V[row_i] in float64 from the synthetic table formula
(tests/ref/synthetic.py, no UltraShard code involved) and compare with the
distributed f32 output: max |a - b| / max |ref| per token must be <= 1e-5.
Prints one line per case; exit 1 on any mismatch or if no case was found.
"""
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import row_hash, fin, G  # noqa: E402


def rows_values(seed, table, rows, dim):
    """f32 values of the given (possibly repeated) rows, computed in float64."""
    h = row_hash(seed, table, np.asarray(rows, dtype=np.uint64))[:, None]
    cols = np.arange(1, dim + 1, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        x = fin(h + cols * np.uint64(G))
    return (x >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0


def main(d):
    metas = sorted(glob.glob(os.path.join(d, "case*.meta")))
    if not metas:
        print("no dumped cases in", d)
        return 1
    bad = 0
    for m in metas:
        meta = dict(kv.split("=") for kv in open(m).read().split())
        base = m[:-len(".meta")]
        T, K, D = int(meta["tokens"]), int(meta["k"]), int(meta["dim"])
        rows = np.fromfile(base + ".rows.u64", dtype=np.uint64).reshape(T, K)
        w = np.fromfile(base + ".weights.f32", dtype=np.float32).reshape(T, K)
        out = np.fromfile(base + ".out.f32", dtype=np.float32).reshape(T, D)
        vals = rows_values(int(meta["seed"]), int(meta["table"]), rows.ravel(), D)
        ref = (w.astype(np.float64).reshape(T, K, 1) * vals.reshape(T, K, D)).sum(axis=1)
        scale = np.maximum(np.abs(ref).max(axis=1), 1e-30)
        rel = (np.abs(out - ref).max(axis=1) / scale).max()
        ok = rel <= 1e-5
        bad += not ok
        print(f"{os.path.basename(base)} placement={meta['placement']}: "
              f"max_rel_err={rel:.2e} vs numpy float64 {'ok' if ok else 'FAIL'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
