#!/usr/bin/python3
"""model.py — independent numpy forward pass of the UltraShard transformer.

  model.py logits MODEL_DIR TOKENS.i32 OUT.f32
      logits for every position of one sequence (float64 math, written as f32)
  model.py check MODEL_DIR TOKENS.i32 C_LOGITS.f32 [TOL]
      compare logits written by build/tools/model_logits (default TOL 1e-4,
      absolute, on every logit)
  model.py bpb MODEL_DIR TEXT_FILE
      bits per byte of the text as `ultrashard eval` defines it: inputs BOS,
      b_0..b_{n-2}; sum of -log2 softmax(logits)[b_i] over the 259 tokens / n;
      prints {"bits_per_byte": .., "nll_nats": .., "bytes": n}

Reads MODEL_DIR/config.json, MODEL_DIR/weights.safetensors (parsed here by
hand: 8-byte header length, JSON header, raw little-endian data) and the value
tables MODEL_DIR/values/table_<t>.npy. Semantics follow coordinator/model/model.h,
memlayer.h and kernels/score.h, written again from the papers' formulas:

  block l: x += Wo . gate(A_mem, A_dot); h = rmsnorm(x); dense | moe | memory;
           x += pending[l]; memory output goes to pending[min(l+skip, n-1)]
  Infini-attention per segment of L tokens: A_dot causal softmax attention in
  the segment (with rope_theta > 0 on q, k rotated by RoPE, half-split pairs,
  position = index in the segment; else no positional encoding),
  A_mem = s(Q) M / (s(Q) z) with 0 where
  the denominator is 0 (first segment), s = ELU + 1; after a full segment
  M, z are updated (linear or delta rule) with its K, V (memory: unrotated).
  MoE: top-k experts by router logit (ties: lower index), weights = softmax of
  the selected logits, SwiGLU experts.
  Memory: queries normalised per memory.query_norm (none | layernorm without
  affine | l2; booleans = layernorm/none); per head
  S_row[a,i] = q_row.K_row[a,i], S_col likewise;
  TDQKR (m = tucker_cores cores C_c, selection by C = sum_c C_c):
  C ~ u t^T from the SVD of C (sign: sum(u) >= 0); top-k' rows by
  u.S_row and columns by t.S_col; grid scores S_row^T C S_col on the
  k' x k' candidates; top-knn (ties: lower address); then per core c the
  scores S_row^T C_c S_col of the selected, softmax per core;
  PKM (score = "pkm", r = 1, no core): top-k' of s_row and of s_col, grid
  s_row[i] + s_col[j];
  physical row = address // G, group = address % G; core c's weights pool
  value columns [c v/m, (c+1) v/m) (v = v_dim); y = sum_g P_g W_g;
  memory.output_gate: out = (y * silu(h Wg)) Wout, else out = y.

US_REF_ABLATE=memory|infini|moe|rope|score|cores|gate drops that component from the
reference (the integration test uses it to show each component moves the
logits beyond TOL; score = score with the other rule: a pkm model as TDQKR
with a unit core (products instead of sums), a TDQKR model as PKM on its first
key set, without cores; cores = weight every core's value slice with the
summed core's scores).
"""
import json
import os
import struct
import sys

import numpy as np

# Mutation switch for the test that proves the check can fail: with
# US_REF_ABLATE=memory|infini|moe|rope|score|cores|gate the reference drops that
# component.
ABLATE = os.environ.get("US_REF_ABLATE", "")


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], "<f4").astype(np.float64) \
            .reshape(info["shape"])
    return out


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def silu(x):
    return x / (1.0 + np.exp(-x))


def elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def rope(x, theta):
    """RoPE of rows x [n][D] at positions 0..n-1 (half-split pairing)."""
    n, D = x.shape
    half = D // 2
    inv_freq = theta ** (-2.0 * np.arange(half) / D)
    a = np.arange(n)[:, None] * inv_freq[None, :]
    c, s = np.cos(a), np.sin(a)
    x1, x2 = x[:, :half], x[:, half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=1)


def query_norm(q, mode, eps):
    if mode is True or mode == "layernorm":
        mu = q.mean(axis=-1, keepdims=True)
        var = ((q - mu) ** 2).mean(axis=-1, keepdims=True)
        return (q - mu) / np.sqrt(var + eps)
    if mode == "l2":
        return q / np.maximum(np.sqrt((q * q).sum(axis=-1, keepdims=True)), 1e-12)
    return q


def topk(scores, k):
    """Indices of the k best: higher score first, ties to the lower index."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:k]


class Model:
    def __init__(self, d):
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        self.w = load_safetensors(os.path.join(d, "weights.safetensors"))
        self.tables = []
        n_mem = sum(1 for k in self.cfg["layers"] if k == "memory")
        for t in range(n_mem):
            self.tables.append(np.load(os.path.join(d, "values", f"table_{t}.npy"))
                               .astype(np.float64))

    def attention(self, l, h, state):
        c, w = self.cfg, self.w
        H, dh, L = c["n_heads"], c["head_dim"], c["segment_len"]
        q = h @ w[f"layers.{l}.attn.wq"]
        k = h @ w[f"layers.{l}.attn.wk"]
        v = h @ w[f"layers.{l}.attn.wv"]
        beta = w[f"layers.{l}.attn.beta"]
        out = np.zeros_like(q)
        T = h.shape[0]
        M, z = state[l]
        for s0 in range(0, T, L):
            s1 = min(s0 + L, T)
            n = s1 - s0
            for hh in range(H):
                sl = slice(hh * dh, (hh + 1) * dh)
                qs, ks, vs = q[s0:s1, sl], k[s0:s1, sl], v[s0:s1, sl]
                qd, kd = qs, ks
                theta = c.get("rope_theta", 0)
                if theta > 0 and ABLATE != "rope":
                    qd, kd = rope(qs, theta), rope(ks, theta)
                sc = qd @ kd.T / np.sqrt(dh)
                sc = np.where(np.tril(np.ones((n, n), bool)), sc, -np.inf)
                a_dot = softmax(sc) @ vs
                sq = elu1(qs)
                den = (sq @ z[hh])[:, None]
                a_mem = np.where(den == 0, 0.0, (sq @ M[hh]) / np.where(den == 0, 1, den))
                g = 1.0 / (1.0 + np.exp(-beta[hh]))
                if ABLATE == "infini":
                    a_mem = np.zeros_like(a_mem)
                out[s0:s1, sl] = g * a_mem + (1 - g) * a_dot
            if n == L:   # a full segment is folded into the memory
                for hh in range(H):
                    sl = slice(hh * dh, (hh + 1) * dh)
                    sk, vs = elu1(k[s0:s1, sl]), v[s0:s1, sl]
                    if c["infini_rule"] == "delta":
                        den = (sk @ z[hh])[:, None]
                        ret = np.where(den == 0, 0.0,
                                       (sk @ M[hh]) / np.where(den == 0, 1, den))
                        vs = vs - ret
                    M[hh] = M[hh] + sk.T @ vs
                    z[hh] = z[hh] + sk.sum(axis=0)
        return out @ w[f"layers.{l}.attn.wo"]

    def moe(self, l, h):
        c, w = self.cfg, self.w
        E, K = c["moe"]["experts"], c["moe"]["top_k"]
        logits = h @ w[f"layers.{l}.moe.router"]
        out = np.zeros_like(h)
        for t in range(h.shape[0]):
            sel = topk(logits[t], K)
            g = softmax(logits[t, sel])
            for e, ge in zip(sel, g):
                a = h[t] @ w[f"layers.{l}.moe.w1"][e]
                b = h[t] @ w[f"layers.{l}.moe.w3"][e]
                out[t] += ge * ((silu(a) * b) @ w[f"layers.{l}.moe.w2"][e])
        return out

    def select(self, mc, s_row, s_col, cores):
        """Addresses [knn] and per-core weights [m][knn] of one token and head."""
        n, kp, knn = mc["n_keys"], mc["candidates"], mc["knn"]
        pkm = mc.get("score", "tdqkr") == "pkm"
        if ABLATE == "score":   # score with the other rule
            pkm = not pkm
            if pkm:
                s_row, s_col = s_row[:1], s_col[:1]
            cores = np.ones((1, 1, 1)) if cores is None else cores
        if pkm:
            rows = np.sort(topk(s_row[0], kp))
            cols = np.sort(topk(s_col[0], kp))
            grids = [s_row[0, rows][:, None] + s_col[0, cols][None, :]]
        else:
            C = cores.sum(axis=0)
            _, _, vt = np.linalg.svd(C)
            t1 = vt[0]
            u1 = C @ t1
            if u1.sum() < 0:
                u1, t1 = -u1, -t1
            rows = np.sort(topk(u1 @ s_row, kp))
            cols = np.sort(topk(t1 @ s_col, kp))
            grids = [s_row[:, rows].T @ C @ s_col[:, cols]]
            grids += [s_row[:, rows].T @ Cc @ s_col[:, cols] for Cc in cores]
        addr = (rows[:, None] * n + cols[None, :]).reshape(-1)
        order = np.lexsort((addr, -grids[0].reshape(-1)))[:knn]
        per_core = grids[1:] if len(grids) > 1 else grids
        if ABLATE == "cores":   # every core's slice weighted by the summed core
            per_core = [grids[0]] * len(per_core)
        wts = [g.reshape(-1)[order] for g in per_core]
        if mc["weights"] == "softmax":
            wts = [softmax(w) for w in wts]
        return addr[order], wts

    def memory(self, l, h, table):
        c, w = self.cfg, self.w
        mc = c["memory"]
        Hm, kd, n, r = mc["heads"], mc["k_dim"], mc["n_keys"], mc["tucker_rank"]
        G, m = mc["ive_groups"], mc.get("tucker_cores", 1)
        V = self.tables[table]
        vs = V.shape[1] // m
        q = (h @ w[f"layers.{l}.mem.wq"]).reshape(h.shape[0], Hm, 2, kd)
        q = query_norm(q, mc.get("query_norm", False), c["norm_eps"])
        krow = w[f"layers.{l}.mem.keys_row"].reshape(Hm, r, n, kd)
        kcol = w[f"layers.{l}.mem.keys_col"].reshape(Hm, r, n, kd)
        core = w.get(f"layers.{l}.mem.core")
        core = None if core is None else core.reshape(Hm, m, r, r)
        pooled = np.zeros((h.shape[0], G, V.shape[1]))
        for hh in range(Hm):
            for t in range(h.shape[0]):
                s_row = krow[hh] @ q[t, hh, 0]     # [r][n]
                s_col = kcol[hh] @ q[t, hh, 1]
                addr, wts = self.select(mc, s_row, s_col,
                                        None if core is None else core[hh])
                for ci, wc in enumerate(wts):
                    cs = slice(ci * vs, (ci + 1) * vs)
                    for a, wt in zip(addr, wc):
                        pooled[t, a % G, cs] += wt * V[a // G, cs]
        y = np.einsum("tgi,gio->to", pooled, w[f"layers.{l}.mem.ive"])
        if mc.get("output_gate", False) and ABLATE != "gate":
            y = (y * silu(h @ w[f"layers.{l}.mem.gate"])) @ w[f"layers.{l}.mem.out"]
        return y

    def forward(self, tokens):
        c, w = self.cfg, self.w
        nl, H, dh, eps = c["n_layers"], c["n_heads"], c["head_dim"], c["norm_eps"]
        x = w["tok_emb"][tokens].copy()
        state = [(np.zeros((H, dh, dh)), np.zeros((H, dh))) for _ in range(nl)]
        pending = [np.zeros_like(x) for _ in range(nl)]
        table = 0
        for l, kind in enumerate(c["layers"]):
            x = x + self.attention(l, rmsnorm(x, w[f"layers.{l}.attn_norm"], eps), state)
            h = rmsnorm(x, w[f"layers.{l}.ffn_norm"], eps)
            if kind == "dense":
                a = h @ w[f"layers.{l}.ffn.w1"]
                b = h @ w[f"layers.{l}.ffn.w3"]
                x = x + (silu(a) * b) @ w[f"layers.{l}.ffn.w2"]
            elif kind == "moe":
                x = x + (0 if ABLATE == "moe" else self.moe(l, h))
            else:
                target = min(l + c["memory"]["skip"], nl - 1)
                if ABLATE != "memory":
                    pending[target] = pending[target] + self.memory(l, h, table)
                table += 1
            x = x + pending[l]
        return rmsnorm(x, w["norm_f"], eps) @ w["lm_head"]


def bits_per_byte(model, path):
    data = np.frombuffer(open(path, "rb").read(), np.uint8).astype(np.int64)
    tokens = np.concatenate([[256], data[:-1]])
    logits = model.forward(tokens)
    mx = logits.max(axis=1, keepdims=True)
    logp = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
    nll = float(-logp[np.arange(data.size), data].sum())
    print(json.dumps({"bits_per_byte": nll / (data.size * np.log(2)), "nll_nats": nll,
                      "bytes": int(data.size)}))
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "bpb":
        return bits_per_byte(Model(sys.argv[2]), sys.argv[3])
    if len(sys.argv) < 5 or sys.argv[1] not in ("logits", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    model = Model(sys.argv[2])
    tokens = np.fromfile(sys.argv[3], "<i4")
    ref = model.forward(tokens)
    if sys.argv[1] == "logits":
        ref.astype("<f4").tofile(sys.argv[4])
        return 0
    tol = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-4
    got = np.fromfile(sys.argv[4], "<f4").astype(np.float64)
    if got.size != ref.size:
        print(f"FAIL: {sys.argv[4]} has {got.size} logits, want {ref.size}")
        return 1
    err = np.abs(got.reshape(ref.shape) - ref)
    worst = float(err.max())
    pos = int(np.unravel_index(err.argmax(), err.shape)[0])
    print(f"{sys.argv[4]}: {ref.shape[0]} positions x {ref.shape[1]} logits, "
          f"max abs err {worst:.3e} (at position {pos}), logit range "
          f"[{ref.min():.2f}, {ref.max():.2f}], tol {tol}")
    if not worst <= tol:
        print("FAIL: outside tolerance")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
