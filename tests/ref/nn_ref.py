#!/usr/bin/python3
"""nn_ref.py — independent numpy reference for the neural-net kernels.

  nn_ref.py gen DIR     write random inputs DIR/<name>.f32 (raw little-endian f32)
  nn_ref.py check DIR   recompute every output in float64 numpy and compare with
                        DIR/out_<name>.f32 written by build/tools/nn_check

Shapes are fixed below and mirrored in tests/tools/nn_check.c. Tolerance: an
output passes when |c - ref| <= TOL * (1 + |ref|) elementwise, TOL = 1e-5.
Infini-attention zero denominator: like kernels/infini.h, the quotient is 0
where the denominator s(Q) z is exactly 0 (first segment), no epsilon.
"""
import os
import sys

import numpy as np

TOL = 1e-5
N, D = 5, 13                  # norm rows, dim (not a multiple of 8)
SR, SC = 4, 11                # softmax rows, cols
NS = 37                       # swiglu elements
T, H, DH = 9, 3, 5            # attention segment length, heads, head dim
TQ = 2                        # decode: queries against a cache of T keys
IT, IH, DK, DV = 9, 2, 7, 6   # infini segment length, heads, d_key, d_value
IVE_T, E, VD, DO = 5, 4, 7, 9  # ive tokens, groups, value dim, out dim

INPUTS = {
    "norm_x": (N, D), "norm_w": (D,), "norm_b": (D,),
    "sm_x": (SR, SC),
    "sw_g": (NS,), "sw_u": (NS,),
    "at_q": (T, H * DH), "at_k": (T, H * DH), "at_v": (T, H * DH),
    "inf_q1": (IT, IH * DK), "inf_k1": (IT, IH * DK), "inf_v1": (IT, IH * DV),
    "inf_q2": (IT, IH * DK), "inf_k2": (IT, IH * DK), "inf_v2": (IT, IH * DV),
    "inf_beta": (IH,), "inf_adot": (IT, IH * DV),
    "ive_p": (IVE_T, E, VD), "ive_w": (E, VD, DO),
}


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def layernorm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def silu(x):
    return x / (1.0 + np.exp(-x))


def elu1(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def causal_attention(q, k, v, heads):
    nq, nkv = q.shape[0], k.shape[0]
    dh = q.shape[1] // heads
    out = np.zeros_like(q)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[:, sl] @ k[:, sl].T / np.sqrt(dh)
        pos = np.arange(nq)[:, None] + (nkv - nq)
        s = np.where(np.arange(nkv)[None, :] <= pos, s, -np.inf)
        out[:, sl] = softmax(s) @ v[:, sl]
    return out


def guarded_div(num, den):
    """num / den with 0 where den == 0 (the first-segment rule)."""
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, 0.0, num / safe)


def infini_retrieve(q, M, z, heads):
    dk = M.shape[1]
    out = []
    for h in range(heads):
        sq = elu1(q[:, h * dk:(h + 1) * dk])
        out.append(guarded_div(sq @ M[h], (sq @ z[h])[:, None]))
    return np.concatenate(out, axis=1)


def infini_update(M, z, k, v, heads, rule):
    dk, dv = M.shape[1], M.shape[2]
    M, z = M.copy(), z.copy()
    for h in range(heads):
        sk = elu1(k[:, h * dk:(h + 1) * dk])
        vh = v[:, h * dv:(h + 1) * dv]
        if rule == "delta":
            vh = vh - guarded_div(sk @ M[h], (sk @ z[h])[:, None])
        M[h] = M[h] + sk.T @ vh
        z[h] = z[h] + sk.sum(axis=0)
    return M, z


def gate(a_mem, a_dot, beta, heads):
    dv = a_mem.shape[1] // heads
    g = np.repeat(1.0 / (1.0 + np.exp(-beta)), dv)[None, :]
    return g * a_mem + (1.0 - g) * a_dot


def reference(x):
    out = {}
    out["rmsnorm"] = rmsnorm(x["norm_x"], x["norm_w"], 1e-5)
    out["layernorm"] = layernorm(x["norm_x"], x["norm_w"], x["norm_b"], 1e-5)
    out["softmax"] = softmax(x["sm_x"])
    out["swiglu"] = silu(x["sw_g"]) * x["sw_u"]
    out["attn_prefill"] = causal_attention(x["at_q"], x["at_k"], x["at_v"], H)
    out["attn_decode"] = causal_attention(x["at_q"][-TQ:], x["at_k"], x["at_v"], H)
    for rule in ("linear", "delta"):
        M = np.zeros((IH, DK, DV))
        z = np.zeros((IH, DK))
        a1 = infini_retrieve(x["inf_q1"], M, z, IH)
        M, z = infini_update(M, z, x["inf_k1"], x["inf_v1"], IH, rule)
        a2 = infini_retrieve(x["inf_q2"], M, z, IH)
        M, z = infini_update(M, z, x["inf_k2"], x["inf_v2"], IH, rule)
        out[f"inf_{rule}_a1"] = a1
        out[f"inf_{rule}_a2"] = a2
        out[f"inf_{rule}_M"] = M
        out[f"inf_{rule}_z"] = z
        out[f"inf_{rule}_gate"] = gate(a2, x["inf_adot"], x["inf_beta"], IH)
    out["ive"] = np.einsum("tpi,pio->to", x["ive_p"], x["ive_w"])
    return out


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    d = sys.argv[2]
    if sys.argv[1] == "gen":
        rng = np.random.default_rng(20260704)
        for name, shape in INPUTS.items():
            a = rng.standard_normal(shape)
            if name == "sm_x":
                a *= 10.0
            a.astype("<f4").tofile(os.path.join(d, name + ".f32"))
        return 0
    x = {name: np.fromfile(os.path.join(d, name + ".f32"), "<f4").astype(np.float64)
         .reshape(shape) for name, shape in INPUTS.items()}
    ref = reference(x)
    bad = 0
    for name, want in ref.items():
        path = os.path.join(d, "out_" + name + ".f32")
        got = np.fromfile(path, "<f4").astype(np.float64)
        if got.size != want.size:
            print(f"FAIL {name}: {got.size} values in {path}, want {want.size}")
            bad += 1
            continue
        want = want.reshape(-1)
        err = np.abs(got - want) / (1.0 + np.abs(want))
        worst = float(err.max()) if err.size else 0.0
        ok = np.all(err <= TOL)
        print(f"{'ok  ' if ok else 'FAIL'} {name:18s} n={want.size:4d} max_rel_err={worst:.2e}")
        bad += 0 if ok else 1
    if bad:
        print(f"{bad} outputs outside tolerance {TOL}")
        return 1
    print(f"all {len(ref)} outputs within {TOL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
