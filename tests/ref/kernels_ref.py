#!/usr/bin/python3
"""Independent numpy reference for the memory-lookup kernels.

Reads the .npy files written by `test_kernels_dump --dump DIR` and recomputes
every output in float64 with numpy (no code shared with the C kernels):

  gather  sum_i w_i * V[row_i] (zero weights skipped), plain and per group;
          tolerance 1e-5 * sum_i |w_i x_i| per element (f32 accumulation)
  topk    full stable sort by (NaN last, score descending, index); exact
  score   PKM / TDQKR / MCS: S = Q K^T in float64, rank-1 factors of the core
          from numpy's SVD (sign: sum(u) >= 0), top-k' per side, candidate
          grid, final top-k, optional softmax; scores within 1e-4 relative;
          ids equal except next to near-ties (float32 vs float64 rounding may
          swap them), and the C scores must be the exact scores of the C ids
  quant   scale = max|x| / 127 and q = clip(rint(x / scale)) in float32; exact

Usage: kernels_ref.py DIR    (exit 0 if everything matches, 1 otherwise)
"""
import os
import sys

import numpy as np

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def load(d, name):
    return np.load(os.path.join(d, name + ".npy"))


def decode_table(dtype, table, scales):
    if dtype == "f32":
        return table.astype(np.float64)
    if dtype == "bf16":
        return (table.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype == "f16":
        return table.view(np.float16).astype(np.float64)
    return table.astype(np.float64) * scales.astype(np.float64)[:, None]


def check_gather(d, dtype):
    p = "gather_" + dtype + "_"
    table, scales = load(d, p + "table"), load(d, p + "scales")
    rows, w, group = load(d, p + "rows"), load(d, p + "weights"), load(d, p + "group")
    out, out_g = load(d, p + "out"), load(d, p + "out_grouped")
    V = decode_table(dtype, table, scales)
    T, K = rows.shape
    G = out_g.shape[1]
    for t in range(T):
        want = np.zeros((G + 1, V.shape[1]))
        mag = np.zeros((G + 1, V.shape[1]))
        for i in range(K):
            if w[t, i] == 0.0:
                continue
            x = float(w[t, i]) * V[rows[t, i]]
            for slot in (G, int(group[t, i])):   # slot G: the ungrouped sum
                want[slot] += x
                mag[slot] += np.abs(x)
        tol = 1e-5 * mag + 1e-30
        check(np.all(np.abs(out[t] - want[G]) <= tol[G]), "gather %s token %d" % (dtype, t))
        check(np.all(np.abs(out_g[t] - want[:G]) <= tol[:G]),
              "gather %s grouped token %d" % (dtype, t))


def topk_order(scores, k):
    """Indices of the k best: NaN last, then score descending, then index."""
    keys = [(1 if np.isnan(s) else 0, 0.0 if np.isnan(s) else -float(s), i)
            for i, s in enumerate(scores)]
    return [i for _, _, i in sorted(keys)[:k]]


def check_topk(d):
    s, idx, val = load(d, "topk_scores"), load(d, "topk_idx"), load(d, "topk_val")
    for r in range(s.shape[0]):
        want = topk_order(s[r], idx.shape[1])
        check(list(idx[r]) == want, "topk row %d ids" % r)
        check(np.array_equal(val[r], s[r][want], equal_nan=True), "topk row %d values" % r)


def rank1(c):
    u_, sv, vt = np.linalg.svd(c)
    u, t = u_[:, 0] * sv[0], vt[0]
    if u.sum() < 0:
        u, t = -u, -t
    return u, t


def score_reference(q, k_row, k_col, core, meta):
    T, H, d, nr, nc, r, m, kp, k, mode, act = (int(x) for x in meta)
    idx = np.zeros((T, H, k), dtype=np.uint64)
    sc = np.zeros((m, T, H, k))
    for h in range(H):
        csum = core[h].astype(np.float64).sum(axis=0)
        u, tv = rank1(csum) if mode == 1 else (np.ones(1), np.ones(1))
        for t in range(T):
            s_row = k_row[h].astype(np.float64) @ q[t, h, 0].astype(np.float64)   # [r, nr]
            s_col = k_col[h].astype(np.float64) @ q[t, h, 1].astype(np.float64)   # [r, nc]
            if mode == 0:
                pre_r, pre_c = s_row[0], s_col[0]
            else:
                pre_r, pre_c = u @ s_row, tv @ s_col
            ir = sorted(topk_order(pre_r, kp))
            ic = sorted(topk_order(pre_c, kp))
            if mode == 0:
                grid = s_row[0][ir][:, None] + s_col[0][ic][None, :]
            else:
                grid = s_row[:, ir].T @ csum @ s_col[:, ic]
            best = topk_order(grid.reshape(-1), k)
            for n, pos in enumerate(best):
                i, j = ir[pos // kp], ic[pos % kp]
                idx[t, h, n] = i * nc + j
                for c in range(m):
                    if m == 1:
                        sc[c, t, h, n] = grid.reshape(-1)[pos]
                    else:
                        sc[c, t, h, n] = s_row[:, i] @ core[h, c].astype(np.float64) @ s_col[:, j]
    if act == 1:
        e = np.exp(sc - sc.max(axis=3, keepdims=True))
        sc = e / e.sum(axis=3, keepdims=True)
    return idx, sc


def exact_scores(q, k_row, k_col, core, meta, ids):
    """The raw score of each given id (no selection), float64."""
    T, H, d, nr, nc, r, m, kp, k, mode, act = (int(x) for x in meta)
    out = np.zeros((m, T, H, k))
    for t in range(T):
        for h in range(H):
            s_row = k_row[h].astype(np.float64) @ q[t, h, 0].astype(np.float64)
            s_col = k_col[h].astype(np.float64) @ q[t, h, 1].astype(np.float64)
            for n in range(k):
                i, j = int(ids[t, h, n]) // nc, int(ids[t, h, n]) % nc
                for c in range(m):
                    if mode == 0:
                        out[c, t, h, n] = s_row[0, i] + s_col[0, j]
                    else:
                        cc = core[h].astype(np.float64).sum(axis=0) if m == 1 else core[h, c]
                        out[c, t, h, n] = s_row[:, i] @ cc @ s_col[:, j]
    if act == 1:
        e = np.exp(out - out.max(axis=3, keepdims=True))
        out = e / e.sum(axis=3, keepdims=True)
    return out


def check_score(d, name):
    meta = load(d, name + "_meta")
    q, k_row, k_col = load(d, name + "_q"), load(d, name + "_k_row"), load(d, name + "_k_col")
    core, idx, sc = load(d, name + "_core"), load(d, name + "_idx"), load(d, name + "_scores")
    want_idx, want_sc = score_reference(q, k_row, k_col, core, meta)
    tol = 1e-4 * (1 + np.abs(want_sc))
    check(np.all(np.abs(sc - want_sc) <= tol), "%s scores (max diff %.3g)"
          % (name, np.max(np.abs(sc - want_sc))))
    check(np.all(np.abs(sc - exact_scores(q, k_row, k_col, core, meta, idx)) <= tol),
          "%s: reported scores are not the scores of the reported ids" % name)
    diff = idx != want_idx
    key = want_sc.sum(axis=0)          # ranking key: sum over cores
    k = idx.shape[2]
    for t, h, n in zip(*np.nonzero(diff)):
        near = any(0 <= n2 < k and abs(key[t, h, n] - key[t, h, n2]) <= 2e-4 * (1 + abs(key[t, h, n]))
                   for n2 in (n - 1, n + 1)) or n == k - 1
        check(near, "%s: id differs at a clear gap (t %d h %d n %d)" % (name, t, h, n))
    check(diff.mean() <= 0.05, "%s: %.1f%% of ids differ" % (name, 100 * diff.mean()))


def check_quant(d):
    x, q, scales = load(d, "quant_x"), load(d, "quant_q"), load(d, "quant_scales")
    want_scales = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    check(np.array_equal(scales, want_scales), "quant scales")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = x / want_scales[:, None]
    want_q = np.where(want_scales[:, None] == 0, 0,
                      np.clip(np.rint(ratio), -127, 127)).astype(np.int8)
    check(np.array_equal(q, want_q), "quant codes (%d differ)" % int((q != want_q).sum()))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    d = sys.argv[1]
    for dtype in ("f32", "bf16", "f16", "int8"):
        check_gather(d, dtype)
    check_topk(d)
    for name in ("score_pkm", "score_tdqkr", "score_mcs", "score_mcs_raw"):
        check_score(d, name)
    check_quant(d)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("kernels numpy reference: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
