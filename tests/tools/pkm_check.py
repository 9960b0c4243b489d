#!/usr/bin/python3
"""pkm_check.py — test of ultrashard.convert against a PKM layer built in torch.

  pkm_check.py make DIR SEED
      writes DIR/KIND.pt for KIND in xlm, memplus, xlm-bias: the state_dict
      (under "model", key prefix "mem.") of a product-key memory (d 64, 2 heads, PKM
      k_dim 32 = two halves of 16, 16 x 16 keys, values 256 x 64) laid out
      as KIND: "xlm" (keys [heads][2][n][half], Linear + BatchNorm1d query
      whose eval shift is 0, values.weight) or "memplus" (keys
      [2*heads*n][half], bias-free Linear query, value_proj and
      swilu_projection). With KIND "xlm-bias" the query Linear has a bias
      (the converter must refuse it).
  pkm_check.py check TOKENS.i32 LAYER KNN KIND MODEL_DIR KIND.pt C_LOGITS.f32 [...]
      for each group of four: the twin of the converted MODEL_DIR with layer
      LAYER's memory replaced by the PKM module itself (PKMRef below, fed the
      layer's normed input) must give the C logits of MODEL_DIR within
      1e-4 * max |logit|: then the C memory layer computes what the PKM
      layer computes. And with the PKM's row and column key sets exchanged
      the same check must fail.

PKMRef is written here from the PKM paper and XLM's memory.py (query net,
split into halves, top-knn per half, cartesian sums, top-knn, softmax,
EmbeddingBag sum over heads; Memory+: value_proj(out * silu(swilu(x)))); it
shares no code with ultrashard.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python"))
from ultrashard.io import load_model  # noqa: E402

D, HEADS, K_DIM, N_KEYS, V_DIM = 64, 2, 32, 16, 64


class PKMRef(nn.Module):
    def __init__(self, kind, knn=4):
        super().__init__()
        half = K_DIM // 2
        self.kind, self.knn = kind, knn
        shape = (2 * HEADS * N_KEYS, half) if kind == "memplus" else (HEADS, 2, N_KEYS, half)
        self.keys = nn.Parameter(torch.empty(shape).uniform_(-half ** -0.5, half ** -0.5))
        self.query_proj = nn.Module()
        layers = [nn.Linear(D, HEADS * K_DIM, bias=kind != "memplus")]
        if kind.startswith("xlm"):
            layers.append(nn.BatchNorm1d(HEADS * K_DIM))
        self.query_proj.query_mlps = nn.Sequential(*layers)
        self.values = nn.EmbeddingBag(N_KEYS ** 2, V_DIM, mode="sum")
        nn.init.normal_(self.values.weight, std=V_DIM ** -0.5)
        if kind == "memplus":
            self.value_proj = nn.Linear(V_DIM, D, bias=False)
            self.swilu_projection = nn.Linear(D, V_DIM, bias=False)

    def randomize_bn(self):
        """Eval statistics with a zero total shift (what the converter folds)."""
        lin, bn = self.query_proj.query_mlps
        with torch.no_grad():
            if self.kind == "xlm":
                lin.bias.zero_()
            else:
                lin.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.copy_(bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps))
        self.eval()

    def forward(self, x):
        N, half = x.shape[0], K_DIM // 2
        q = self.query_proj.query_mlps(x).view(N, HEADS, K_DIM)
        keys = self.keys.view(HEADS, 2, N_KEYS, half)
        idx, sc = [], []
        for h in range(HEADS):
            s1 = q[:, h, :half] @ keys[h, 0].t()
            s2 = q[:, h, half:] @ keys[h, 1].t()
            v1, i1 = s1.topk(self.knn, 1)
            v2, i2 = s2.topk(self.knn, 1)
            both = (v1[:, :, None] + v2[:, None, :]).reshape(N, -1)
            ids = (i1[:, :, None] * N_KEYS + i2[:, None, :]).reshape(N, -1)
            best, pos = both.topk(self.knn, 1)
            idx.append(ids.gather(1, pos))
            sc.append(F.softmax(best, -1))
        out = self.values(torch.cat(idx, 1), per_sample_weights=torch.cat(sc, 1))
        if self.kind == "memplus":
            out = self.value_proj(out * F.silu(self.swilu_projection(x)))
        return out


def cmd_make(directory, seed):
    for kind in ("xlm", "memplus", "xlm-bias"):
        torch.manual_seed(seed)
        pkm = PKMRef(kind)
        if kind.startswith("xlm"):
            pkm.randomize_bn()
        torch.save({"model": {"mem." + k: v for k, v in pkm.state_dict().items()}},
                   os.path.join(directory, kind + ".pt"))
    return 0


def check_one(model_dir, pt, kind, layer, tokens, c_path, knn, swap):
    """Returns: True when the comparison comes out as expected."""
    pkm = PKMRef(kind, knn)
    sd = torch.load(pt)["model"]
    pkm.load_state_dict({k[len("mem."):]: v for k, v in sd.items()})
    pkm.eval()
    if swap:
        with torch.no_grad():
            k = pkm.keys.view(HEADS, 2, N_KEYS, K_DIM // 2)
            k.copy_(k.flip(1))
    twin = load_model(model_dir)
    mem_w = twin.layers[layer].mem
    orig = twin._memory

    def patched(w, h, table):
        if w is not mem_w:
            return orig(w, h, table)
        return pkm(h.reshape(-1, D)).view(h.shape)
    twin._memory = patched
    with torch.no_grad():
        ref = twin(torch.from_numpy(tokens.astype(np.int64))[None])[0][0].double().numpy()
    c = np.fromfile(c_path, "<f4").astype(np.float64).reshape(ref.shape)
    rel = float(np.abs(ref - c).max() / np.abs(c).max())
    inside = rel <= 1e-4
    print(f"{kind}{' (row/column keys swapped)' if swap else ''}: C converted model vs twin "
          f"with the PKM module at layer {layer}: max rel diff {rel:.2e}, tol 1e-4")
    if swap and inside:
        print("FAIL: swapping the PKM halves did not change the logits")
    elif not swap and not inside:
        print("FAIL: outside tolerance")
    return inside != swap


def main():
    torch.set_num_threads(1)
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "make":
        return cmd_make(a[1], int(a[2]))
    if len(a) >= 8 and (len(a) - 4) % 4 == 0 and a[0] == "check":
        tokens, layer, knn = np.fromfile(a[1], "<i4"), int(a[2]), int(a[3])
        ok = True
        for i in range(4, len(a), 4):
            kind, model_dir, pt, c_path = a[i:i + 4]
            for swap in (False, True):
                ok &= check_one(model_dir, pt, kind, layer, tokens, c_path, knn, swap)
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
