#!/usr/bin/python3
"""ablation.py — dense vs MoE vs UltraMem at toy scale (UltraMem paper, table 1).

  ablation.py configs --out DIR     write dense.json, moe.json, ultramem.json
  ablation.py table RESULTS.jsonl   the README table from python/train/ablation.sh

Three byte-level models of the same trunk (d_model 128, 4 layers, 4 heads
of 32, Infini-attention segment 64, RoPE) with EQUAL activated parameters per
token (counted as tests/bench/bench_models.c counts them: attention, FFN,
top-2 experts + router, memory query + keys + core + IVE + the knn value rows
a token reads):
  dense     4 x SwiGLU FFN, hidden 384
  moe       4 x MoE, 8 experts of hidden 192, top-2
  ultramem  dense(F), memory, dense(F), memory; F chosen so that activated
            parameters match dense's; memory: TDQKR r 2, 2 heads x knn 16,
            n_keys 128, IVE 4, v_dim 128 (4096 rows x 128 per table)
MoE and UltraMem have similar total parameters (several x dense).
"""
import copy
import json
import os
import sys

TRUNK = {
    "format": "ultrashard-model", "version": 1, "vocab_size": 259,
    "d_model": 128, "n_layers": 4, "n_heads": 4, "head_dim": 32, "segment_len": 64,
    "rope_theta": 10000, "infini_rule": "delta", "norm_eps": 1e-05, "ffn_hidden": 384,
    "moe": {"experts": 8, "top_k": 2, "hidden": 192},
    "memory": {"heads": 2, "n_keys": 128, "k_dim": 32, "tucker_rank": 2, "knn": 16,
               "candidates": 16, "v_dim": 128, "ive_groups": 4, "skip": 1,
               "weights": "softmax", "query_norm": "layernorm"},
}


def counts(c):
    """(total, activated) parameters per token, as bench_models.c."""
    d, hd = c["d_model"], c["n_heads"] * c["head_dim"]
    m = c["memory"]
    rows = m["n_keys"] ** 2 // m["ive_groups"]
    tot = act = 2 * 259 * d + d          # embedding, LM head, final norm
    for kind in c["layers"]:
        attn = 4 * d * hd + c["n_heads"] + 2 * d
        tot += attn
        act += attn
        if kind == "dense":
            f = 3 * d * c["ffn_hidden"]
            tot += f
            act += f
        elif kind == "moe":
            e, E = 3 * d * c["moe"]["hidden"], c["moe"]["experts"]
            tot += E * e + d * E
            act += c["moe"]["top_k"] * e + d * E
        else:
            fixed = (d * m["heads"] * 2 * m["k_dim"]
                     + 2 * m["heads"] * m["tucker_rank"] * m["n_keys"] * m["k_dim"]
                     + m["heads"] * m["tucker_rank"] ** 2 + m["ive_groups"] * m["v_dim"] * d)
            tot += fixed + rows * m["v_dim"]
            act += fixed + m["heads"] * m["knn"] * m["v_dim"]
    return tot, act


def configs():
    dense = copy.deepcopy(TRUNK)
    dense["layers"] = ["dense"] * 4
    moe = copy.deepcopy(TRUNK)
    moe["layers"] = ["moe"] * 4
    um = copy.deepcopy(TRUNK)
    um["layers"] = ["dense", "memory", "dense", "memory"]
    target = counts(dense)[1]
    # activated params are linear in ffn_hidden: solve, then round to 8
    um["ffn_hidden"] = 0
    base = counts(um)[1]
    um["ffn_hidden"] = int(round((target - base) / (2 * 3 * TRUNK["d_model"]) / 8) * 8)
    return {"dense": dense, "moe": moe, "ultramem": um}


def table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["model"], []).append(r)
    print("| model | total params | activated params / token | held-out bits/byte (C eval), "
          "per seed | mean | train s per run | infer tokens/s, batch 16 (median, range) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("dense", "moe", "ultramem"):
        rs = sorted(by.get(name, []), key=lambda r: r["seed"])
        if not rs:
            continue
        bpb = [r["heldout_bpb_c"] for r in rs]
        tps = rs[0].get("infer_tokens_per_s_all") or [0]
        print(f"| {name} | {rs[0]['total_params'] / 1e6:.2f} M | "
              f"{rs[0]['activated_params'] / 1e6:.3f} M | "
              + ", ".join(f"{b:.3f}" for b in bpb) + f" | {sum(bpb) / len(bpb):.3f} | "
              + ", ".join(f"{r['train_seconds']:.0f}" for r in rs) + " | "
              + f"{rs[0]['infer_tokens_per_s_median']:.0f} ({min(tps):.0f}-{max(tps):.0f}) |")
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "configs" and sys.argv[2] == "--out":
        os.makedirs(sys.argv[3], exist_ok=True)
        for name, c in configs().items():
            with open(os.path.join(sys.argv[3], name + ".json"), "w") as f:
                json.dump(c, f, indent=1)
                f.write("\n")
            tot, act = counts(c)
            print(json.dumps({"model": name, "total_params": tot, "activated_params": act,
                              "ffn_hidden": c["ffn_hidden"]}))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        return table(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
