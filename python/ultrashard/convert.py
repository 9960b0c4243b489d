"""ultrashard.convert — a PKM memory layer (Lample et al. 2019) into one
memory layer of an UltraShard model directory.

  python3 -m ultrashard.convert --pkm CKPT.pt --prefix P --model-dir IN \
      --layer L --knn K --out OUT [--normalize-query] [--raw-scores]
      [--temperature T] [--skip S] [--bn-eps E]

Reads the state_dict of a product-key memory as facebookresearch/XLM
(src/model/memory: HashingMemoryProduct/ProductFast) or the Memory+ layer of
"Memory Layers at Scale" (facebookresearch/memory, HashingMemory) lay it out,
under the key prefix P:

  keys                        [heads][2][n_keys][half]   (XLM, different keys)
                              [n_keys][half]             (XLM, one key set for
                                                          all heads and sides)
                              [2*heads*n_keys][half]     (Memory+, viewed as
                                                          [heads][2][n_keys][half])
  query_proj.query_mlps.0.weight [heads*k_dim][d] (+ .bias, must be 0)
  query_proj.query_mlps.1.*   BatchNorm1d, eval statistics: folded into Wq
                              when its shift (beta - mean * gamma / std) is 0
  (no query_proj: the identity query of XLM, d = k_dim)
  values.weight               [n_keys^2][v_dim] (EmbeddingBag)
  value_proj.weight           [d][v_dim] (Memory+, + .bias, must be 0)
  swilu_projection.weight     [v_dim][d] (Memory+ gate, + .bias, must be 0)

k_dim convention: PKM's k_dim is the FULL query of a head (row half, then
column half); UltraShard's memory.k_dim is ONE half, so ours = theirs / 2.
Rows: PKM's index i1 * n_keys + i2 with i1 from the first half matches our
address i * n_keys + j. PKM keeps knn candidates per side and knn in the
end: candidates = knn. Scores are s1 + s2 (score "pkm"), softmax unless
--raw-scores, divided by --temperature (folded into the keys). Heads are
summed into one output as here. --normalize-query (XLM mem_normalize_query)
maps to query_norm "l2" (our eps 1e-12 guards a zero query; theirs divides
by 0). The memory output goes to layer L + skip (default: the model's skip;
PKM replaces the FFN of its own layer, which is --skip 0).

Written into the model (whose other weights are kept): memory.score pkm,
tucker_rank 1, ive_groups 1, with the IVE projection = identity (v_dim must
equal d_model) or value_proj^T; with swilu_projection the Memory+ output
gate (gate = swilu_projection^T, out = value_proj^T; v_dim = d_model).
Refused, with the reason: query MLPs with hidden layers or biases, a BatchNorm
shift, gating (mem_gated), PEER values, value shapes that do not fit, a
model with other memory layers whose settings would change (memory settings
are shared by all memory layers of a model).
"""
import argparse
import copy
import sys

import torch

from . import config as usconfig
from .io import load_model, save_model
from .model import UltraShardModel


class ConvertError(ValueError):
    """A PKM layer that this model format cannot express (says why)."""


def _get(sd, name, prefix, required=True):
    key = prefix + name
    if key in sd:
        return sd[key].detach().to(torch.float64).cpu()
    if required:
        raise ConvertError(f"state_dict has no '{key}'")
    return None


def _zero_bias(b, what, tol=0.0):
    if b is not None and float(b.abs().max()) > tol:
        raise ConvertError(f"{what} has a non-zero bias (max |b| {float(b.abs().max()):.3g}): "
                           "UltraShard's memory projections have no bias")


def _query(sd, prefix, d, bn_eps):
    """Returns: Wq [d][heads*k_dim] (y = x W) from the query MLP, or None
    for the identity query."""
    names = [k[len(prefix):] for k in sd if k.startswith(prefix + "query_proj.")]
    if not names:
        return None
    allowed = {"query_proj.query_mlps.0.weight", "query_proj.query_mlps.0.bias"} | {
        f"query_proj.query_mlps.1.{s}" for s in
        ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    extra = sorted(set(names) - allowed)
    if extra:
        raise ConvertError(f"query network has more than one linear layer ({prefix}{extra[0]}): "
                           "UltraShard's memory query is one linear map")
    w = _get(sd, "query_proj.query_mlps.0.weight", prefix)
    if w.dim() != 2 or w.shape[1] != d:
        raise ConvertError(f"query weight is {list(w.shape)}, expected [heads*k_dim][{d}]")
    b = _get(sd, "query_proj.query_mlps.0.bias", prefix, False)
    if _get(sd, "query_proj.query_mlps.1.running_var", prefix, False) is not None:
        gamma = _get(sd, "query_proj.query_mlps.1.weight", prefix)
        beta = _get(sd, "query_proj.query_mlps.1.bias", prefix)
        mean = _get(sd, "query_proj.query_mlps.1.running_mean", prefix)
        scale = gamma / torch.sqrt(_get(sd, "query_proj.query_mlps.1.running_var", prefix)
                                   + bn_eps)
        shift = beta - mean * scale + (b * scale if b is not None else 0)
        # f32 rounding of a shift that is 0 by construction leaves ~1e-7
        size = float(beta.abs().max() + (mean * scale).abs().max())
        _zero_bias(shift, "query BatchNorm (eval form, beta + (bias - mean) * gamma / std)",
                   1e-6 * max(size, 1.0))
        w = w * scale.unsqueeze(1)
    else:
        _zero_bias(b, "query linear layer")
    return w.t()


def _keys(k, heads):
    """Returns: keys as [heads][2][n_keys][half]."""
    if k.dim() == 4 and k.shape[1] == 2:
        return k
    if k.dim() == 2 and heads and k.shape[0] % (2 * heads) == 0:
        return k.view(heads, 2, k.shape[0] // (2 * heads), k.shape[1])
    raise ConvertError(f"keys {list(k.shape)}: expected [heads][2][n_keys][half], "
                       "[n_keys][half] or [2*heads*n_keys][half]")


def pkm_layer(sd, prefix, d, bn_eps=1e-5):
    """Reads one PKM layer. Returns: dict with keys [heads][2][n][half] (f64),
    wq [d][heads*2*half] or None, values [n^2][v_dim], value_proj [v_dim][d]
    or None, swilu [d][v_dim] or None. Raises ConvertError."""
    for bad in ("gating.weight", "values_u.weight", "values_v.weight"):
        if prefix + bad in sd:
            raise ConvertError(f"'{prefix}{bad}': gated memory and PEER values cannot be "
                               "expressed")
    wq = _query(sd, prefix, d, bn_eps)
    k = _get(sd, "keys", prefix)
    values = _get(sd, "values.weight", prefix)
    half = k.shape[-1]
    heads = None if wq is None else wq.shape[1] // (2 * half)
    if k.dim() == 2 and k.shape[0] ** 2 == values.shape[0]:
        # XLM without different keys: one set for every head and both halves
        heads = heads or 1
        keys = k.view(1, 1, *k.shape).expand(heads, 2, *k.shape)
    else:
        keys = _keys(k, heads)
    heads, _, n, half = keys.shape
    if wq is None:
        if d != 2 * half:
            raise ConvertError(f"identity query needs d_model = PKM k_dim, got {d} vs "
                               f"{2 * half}")
        wq = torch.eye(d, dtype=torch.float64).repeat(1, heads)
    if wq.shape[1] != heads * 2 * half:
        raise ConvertError(f"query gives {wq.shape[1]} features, keys want heads {heads} x "
                           f"k_dim {2 * half}")
    if values.shape[0] != n * n:
        raise ConvertError(f"values have {values.shape[0]} rows, keys address n_keys^2 = "
                           f"{n * n}")
    vp = _get(sd, "value_proj.weight", prefix, False)
    _zero_bias(_get(sd, "value_proj.bias", prefix, False), "value_proj")
    sw = _get(sd, "swilu_projection.weight", prefix, False)
    _zero_bias(_get(sd, "swilu_projection.bias", prefix, False), "swilu_projection")
    return {"keys": keys, "wq": wq, "values": values,
            "value_proj": None if vp is None else vp.t(), "swilu": None if sw is None else sw.t()}


def convert(model, layer, pkm, knn, normalize_query=False, raw_scores=False,
            temperature=1.0, skip=None):
    """Returns: a new UltraShardModel equal to `model` except that layer
    `layer` is the memory layer described by `pkm` (pkm_layer's dict).
    Raises ConvertError."""
    c = copy.deepcopy(model.cfg)
    d = c["d_model"]
    heads, _, n, half = pkm["keys"].shape
    v_dim = pkm["values"].shape[1]
    gate = pkm["swilu"] is not None
    if gate and (pkm["value_proj"] is None or v_dim != d):
        raise ConvertError(f"swilu gate needs value_proj and v_dim = d_model ({v_dim} vs {d})")
    if pkm["value_proj"] is None and v_dim != d:
        raise ConvertError(f"values are {v_dim} wide without value_proj; the model needs "
                           f"d_model = {d}")
    if not 0 <= layer < c["n_layers"]:
        raise ConvertError(f"layer {layer} is outside [0, {c['n_layers']})")
    new_mem = dict(c["memory"], heads=heads, n_keys=n, k_dim=half, tucker_rank=1,
                   tucker_cores=1, score="pkm", knn=knn, candidates=knn, v_dim=v_dim,
                   ive_groups=1, weights="raw" if raw_scores else "softmax",
                   query_norm="l2" if normalize_query else "none", output_gate=gate)
    if skip is not None:
        new_mem["skip"] = skip
    others = [l for l in usconfig.memory_layers(c) if l != layer]
    if others and new_mem != c["memory"]:
        changed = sorted(k for k in new_mem if new_mem[k] != c["memory"].get(k))
        raise ConvertError(f"layers {others} are memory layers too, and memory settings are "
                           f"shared: converting would change {', '.join(changed)}")
    c["memory"], c["layers"] = new_mem, list(c["layers"])
    c["layers"][layer] = "memory"
    try:
        c = usconfig.parse_config(c, "converted config")
    except usconfig.ConfigError as e:
        raise ConvertError(str(e)) from None
    old_tables = dict(zip(usconfig.memory_layers(model.cfg), model.values))
    values = [pkm["values"] if l == layer else old_tables[l].detach()
              for l in usconfig.memory_layers(c)]
    out = UltraShardModel(c, values, dtype=model.tok_emb.dtype)
    old = dict(model.named_weights())
    keys = pkm["keys"] / temperature
    new = {"wq": pkm["wq"], "keys_row": keys[:, 0], "keys_col": keys[:, 1],
           "ive": (pkm["value_proj"] if pkm["value_proj"] is not None and not gate
                   else torch.eye(d, dtype=torch.float64)).unsqueeze(0)}
    if gate:
        new["gate"], new["out"] = pkm["swilu"], pkm["value_proj"]
    with torch.no_grad():
        for name, p in out.named_weights():
            parts = name.split(".")
            if len(parts) == 4 and int(parts[1]) == layer and parts[2] == "mem":
                p.copy_(new[parts[3]].reshape(p.shape))
            elif name in old and old[name].shape == p.shape:
                p.copy_(old[name])
            else:
                raise ConvertError(f"weight '{name}' has no source")
    return out


def load_state_dict(path):
    """A state_dict from a torch.save file (a plain state_dict, or a
    checkpoint dict holding one under "model" or "state_dict")."""
    obj = torch.load(path, map_location="cpu")
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: not a state_dict")
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m ultrashard.convert",
                                description="PKM memory layer -> UltraShard model directory")
    p.add_argument("--pkm", required=True, help="torch.save file with the PKM state_dict")
    p.add_argument("--prefix", default="", help="key prefix of the memory layer")
    p.add_argument("--model-dir", required=True, help="model directory to start from")
    p.add_argument("--layer", type=int, required=True, help="layer that becomes the memory")
    p.add_argument("--knn", type=int, required=True, help="PKM mem_knn")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--normalize-query", action="store_true", help="PKM mem_normalize_query")
    p.add_argument("--raw-scores", action="store_true", help="PKM without score softmax")
    p.add_argument("--temperature", type=float, default=1.0, help="PKM mem_temperature")
    p.add_argument("--skip", type=int, default=None, help="memory output skip (PKM: 0)")
    p.add_argument("--bn-eps", type=float, default=1e-5, help="query BatchNorm eps")
    a = p.parse_args(argv)
    try:
        model = load_model(a.model_dir)
        pkm = pkm_layer(load_state_dict(a.pkm), a.prefix, model.cfg["d_model"], a.bn_eps)
        out = convert(model, a.layer, pkm, a.knn, a.normalize_query, a.raw_scores,
                      a.temperature, a.skip)
    except (ConvertError, usconfig.ConfigError) as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    save_model(out, a.out)
    m = out.cfg["memory"]
    print(f"convert: layer {a.layer} <- PKM heads {m['heads']}, n_keys {m['n_keys']}, "
          f"k_dim {m['k_dim']} per half, knn {m['knn']}, v_dim {m['v_dim']}"
          f"{', output gate' if m['output_gate'] else ''} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
