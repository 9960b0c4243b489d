#!/usr/bin/python3
"""Peers of the local lookup kernel: numpy fancy indexing + weighted sum, and
torch.nn.EmbeddingBag(mode='sum', per_sample_weights) when torch imports.

Reads the files bench_peers --dump DIR wrote (table, rows, weights and
UltraShard's sums per distribution), checks each peer's sums against
UltraShard's (max |diff| / max |ref|, must be <= 1e-5) before timing, then
prints one JSON line per (peer, dist) in the format of bench_peers: best of
`reps` passes over all batches, one batch (tokens x k pairs) per call.
usage: peers_numpy.py DIR
"""
import json
import os
import resource
import sys
import time

import numpy as np


def max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def emit(meta, peer, dist, secs, err, mem, extra=None):
    pairs = meta["batches"] * meta["tokens"] * meta["k"]
    rec = {"bench": "peers", "peer": peer, "dist": dist, "threads": 1,
           "rows": meta["rows"], "dim": meta["dim"], "dtype": "f32",
           "tokens": meta["tokens"], "k": meta["k"], "batches": meta["batches"],
           "seconds": secs, "tokens_per_s": meta["batches"] * meta["tokens"] / secs,
           "pairs_per_s": pairs / secs, "row_gb_per_s": pairs * meta["dim"] * 4 / secs / 1e9,
           "max_rel_err": err, "mem_bytes": mem}
    rec.update(extra or {})
    print(json.dumps(rec), flush=True)


def rel_err(out, ref):
    mag = float(np.abs(ref).max())
    return float(np.abs(out.astype(np.float64) - ref).max()) / (mag if mag > 0 else 1.0)


def run_peer(meta, name, dist, batch_fn, expect):
    """batch_fn(b) -> (tokens, dim) sums of batch b; verified, then timed."""
    B, T = meta["batches"], meta["tokens"]
    out = np.stack([batch_fn(b) for b in range(B)]).reshape(B * T, -1)
    err = rel_err(out, expect)
    if not err <= 1e-5:
        sys.exit(f"peers_numpy: {name} sums differ from ultrashard's on {dist}: {err}")
    best = float("inf")
    for _ in range(meta["reps"]):
        t0 = time.perf_counter()
        for b in range(B):
            batch_fn(b)
        best = min(best, time.perf_counter() - t0)
    return best, err


def main():
    d = sys.argv[1]
    meta = json.load(open(os.path.join(d, "meta.json")))
    R, D, B, T, K = meta["rows"], meta["dim"], meta["batches"], meta["tokens"], meta["k"]
    table = np.fromfile(os.path.join(d, "table.f32"), dtype=np.float32).reshape(R, D)
    try:
        import torch
        torch.set_num_threads(1)
        bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(table), mode="sum",
                                                    freeze=True)
    except ImportError:
        torch = None
        print("peers_numpy: torch not importable: EmbeddingBag peer skipped "
              "(Debian's python3-torch provides it)", file=sys.stderr)

    for dist in meta["dists"]:
        rows = np.fromfile(os.path.join(d, f"rows_{dist}.i64"), dtype=np.int64).reshape(B, T, K)
        weights = np.fromfile(os.path.join(d, f"weights_{dist}.f32"),
                              dtype=np.float32).reshape(B, T, K)
        expect = np.fromfile(os.path.join(d, f"expect_{dist}.f32"),
                             dtype=np.float32).reshape(B * T, D)

        def numpy_batch(b):
            # fancy indexing gathers (T, k, D); a batched (1 x k) @ (k x D) sums
            return np.matmul(weights[b][:, None, :], table[rows[b]])[:, 0, :]
        secs, err = run_peer(meta, "numpy", dist, numpy_batch, expect)
        emit(meta, "numpy", dist, secs, err, table.nbytes,
             {"process_max_rss": max_rss_bytes(), "numpy": np.__version__})
        if torch is None:
            continue
        trows = [torch.from_numpy(rows[b]) for b in range(B)]
        tw = [torch.from_numpy(weights[b]) for b in range(B)]

        def torch_batch(b):
            with torch.no_grad():
                return bag(trows[b], per_sample_weights=tw[b]).numpy()
        secs, err = run_peer(meta, "torch_embeddingbag", dist, torch_batch, expect)
        emit(meta, "torch_embeddingbag", dist, secs, err, table.nbytes,
             {"process_max_rss": max_rss_bytes(), "torch": torch.__version__})


if __name__ == "__main__":
    main()
