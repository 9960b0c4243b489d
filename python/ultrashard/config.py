"""ultrashard.config — config.json of a model directory, read and checked as C does.

The rules mirror coordinator/model/model_config.c (required fields, ranges,
consistency) plus the variant keys of the model-variants spec (issue #13):
rope_theta, memory.score, memory.tucker_cores, memory.query_norm (string or
the older boolean), memory.output_gate. load_config/parse_config return a
*normalized* dict: every optional key present with its default,
memory.query_norm always a string. to_json_text writes every key,
query_norm as a string, as C's us_model_config_to_json does.

Errors raise ConfigError naming the source and the field, like C's messages.
"""
import copy
import json
import math

FORMAT = "ultrashard-model"
FORMAT_VERSION = 1
VOCAB_SIZE = 259
TOKEN_BOS, TOKEN_EOS, TOKEN_PAD = 256, 257, 258
MAX_LAYERS = 64
LAYER_KINDS = ("dense", "moe", "memory")
SCORES = ("tdqkr", "pkm")
QUERY_NORMS = ("none", "layernorm", "l2")
# Defaults of the optional keys (model-variants spec); a config without them
# means the model as it was before the variants.
DEFAULT_ROPE_THETA = 0.0
DEFAULT_SCORE = "tdqkr"
DEFAULT_TUCKER_CORES = 1
# Absent query_norm means "none", as in C (model_config.h): the key used to be
# an optional boolean defaulting to false. (The variants spec says
# "layernorm"; C and the numpy reference decide; presets set "layernorm".)
DEFAULT_QUERY_NORM = "none"
DEFAULT_OUTPUT_GATE = False
MAX_RANK = 16    # kernels/score.h US_PK_MAX_RANK
MAX_CORES = 16   # kernels/score.h US_PK_MAX_CORES


class ConfigError(ValueError):
    """A config that C would refuse; the message names the source and field."""


def _int(obj, field, lo, hi, what, prefix=""):
    name = prefix + field
    if field not in obj:
        raise ConfigError(f"{what}: missing field '{name}'")
    v = obj[field]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != math.floor(v):
        raise ConfigError(f"{what}: field '{name}' must be an integer")
    if v < lo or v > hi:
        raise ConfigError(f"{what}: field '{name}' = {v:.0f} is outside [{lo}, {hi}]")
    return int(v)


def _object(obj, field, what):
    v = obj.get(field)
    if not isinstance(v, dict):
        raise ConfigError(f"{what}: field '{field}' must be an object")
    return v


def _choice(obj, field, choices, default, what, prefix=""):
    v = obj.get(field, default)
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(f"{what}: field '{prefix}{field}' must be one of "
                          + ", ".join(f'"{c}"' for c in choices))
    return v


def _query_norm(mem, what):
    v = mem.get("query_norm", DEFAULT_QUERY_NORM)
    if isinstance(v, bool):     # the older form: true = LayerNorm
        return "layernorm" if v else "none"
    if isinstance(v, str) and v in QUERY_NORMS:
        return v
    raise ConfigError(f"{what}: field 'memory.query_norm' must be \"none\", \"layernorm\", "
                      "\"l2\", true or false")


def _parse_memory(root, what):
    mem = _object(root, "memory", what)
    p = "memory."
    m = {
        "heads": _int(mem, "heads", 1, 64, what, p),
        "n_keys": _int(mem, "n_keys", 1, 1 << 20, what, p),
        "k_dim": _int(mem, "k_dim", 1, 1 << 16, what, p),
        "tucker_rank": _int(mem, "tucker_rank", 1, MAX_RANK, what, p),
        "knn": _int(mem, "knn", 1, 4096, what, p),
        "candidates": _int(mem, "candidates", 1, 4096, what, p),
        "v_dim": _int(mem, "v_dim", 1, 1 << 16, what, p),
        "ive_groups": _int(mem, "ive_groups", 1, 255, what, p),
        "skip": _int(mem, "skip", 0, MAX_LAYERS, what, p),
        "weights": _choice(mem, "weights", ("softmax", "raw"), None, what, p),
        "query_norm": _query_norm(mem, what),
        "score": _choice(mem, "score", SCORES, DEFAULT_SCORE, what, p),
        "tucker_cores": (_int(mem, "tucker_cores", 1, MAX_CORES, what, p)
                         if "tucker_cores" in mem else DEFAULT_TUCKER_CORES),
        "output_gate": mem.get("output_gate", DEFAULT_OUTPUT_GATE),
    }
    if not isinstance(m["output_gate"], bool):
        raise ConfigError(f"{what}: field 'memory.output_gate' must be true or false")
    return m


def parse_config(text_or_dict, what="config.json"):
    """Parses and validates a config (JSON text or an already decoded dict).
    Returns: the normalized dict. Raises ConfigError."""
    if isinstance(text_or_dict, dict):
        root = text_or_dict
    else:
        try:
            root = json.loads(text_or_dict)
        except ValueError as e:
            raise ConfigError(f"{what}: not a JSON object ({e})") from None
    if not isinstance(root, dict):
        raise ConfigError(f"{what}: not a JSON object")
    if root.get("format") != FORMAT:
        raise ConfigError(f"{what}: field 'format' must be \"{FORMAT}\"")
    version = _int(root, "version", 0, 1 << 30, what)
    if version != FORMAT_VERSION:
        raise ConfigError(f"{what}: model format version {version}, this build reads "
                          f"{FORMAT_VERSION}")
    c = {"format": FORMAT, "version": FORMAT_VERSION}
    c["vocab_size"] = _int(root, "vocab_size", VOCAB_SIZE, VOCAB_SIZE, what)
    for field, hi in (("d_model", 1 << 16), ("n_heads", 1024), ("head_dim", 4096),
                      ("segment_len", 1 << 20), ("ffn_hidden", 1 << 20)):
        c[field] = _int(root, field, 1, hi, what)
    eps = root.get("norm_eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1 \
            or not _f32(eps) > 0:
        raise ConfigError(f"{what}: field 'norm_eps' must be a number in (0, 1]")
    c["norm_eps"] = float(eps)
    c["infini_rule"] = _choice(root, "infini_rule", ("linear", "delta"), None, what)
    theta = root.get("rope_theta", DEFAULT_ROPE_THETA)
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 <= theta <= 1e30 \
            or (theta > 0 and not _f32(theta) > 0):
        raise ConfigError(f"{what}: field 'rope_theta' must be 0 (no RoPE) or a number in "
                          "(0, 1e30]")
    c["rope_theta"] = float(theta)
    moe = _object(root, "moe", what)
    c["moe"] = {"experts": _int(moe, "experts", 1, 256, what, "moe."),
                "top_k": _int(moe, "top_k", 1, 256, what, "moe."),
                "hidden": _int(moe, "hidden", 1, 1 << 20, what, "moe.")}
    c["memory"] = _parse_memory(root, what)
    layers = root.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise ConfigError(f"{what}: field 'layers' must be an array of 1..{MAX_LAYERS} kinds")
    n_layers = _int(root, "n_layers", 1, MAX_LAYERS, what)
    if n_layers != len(layers):
        raise ConfigError(f"{what}: 'n_layers' is {n_layers} but 'layers' lists {len(layers)}")
    for i, k in enumerate(layers):
        if k not in LAYER_KINDS:
            raise ConfigError(f"{what}: layers[{i}] must be \"dense\", \"moe\" or \"memory\"")
    c["n_layers"], c["layers"] = n_layers, list(layers)
    validate(c, what)
    return c


def _f32(x):
    import numpy as np
    return float(np.float32(x))


def validate(c, what="config"):
    """Consistency checks of a normalized config (model_config.c's validate
    plus the variants). Raises ConfigError."""
    m = c["memory"]
    if c["moe"]["top_k"] > c["moe"]["experts"]:
        raise ConfigError(f"{what}: moe.top_k {c['moe']['top_k']} > moe.experts "
                          f"{c['moe']['experts']}")
    virt = m["n_keys"] * m["n_keys"]
    if virt % m["ive_groups"]:
        raise ConfigError(f"{what}: memory.ive_groups {m['ive_groups']} does not divide "
                          f"n_keys^2 = {virt}")
    if m["candidates"] > 256 or m["knn"] > 256:
        raise ConfigError(f"{what}: memory.candidates and memory.knn must be <= 256")
    if m["candidates"] > m["n_keys"] or m["knn"] > m["candidates"] ** 2:
        raise ConfigError(f"{what}: memory needs knn <= candidates^2 and candidates <= n_keys "
                          f"(knn {m['knn']}, candidates {m['candidates']}, "
                          f"n_keys {m['n_keys']})")
    if m["score"] == "pkm" and (m["tucker_rank"] != 1 or m["tucker_cores"] != 1):
        raise ConfigError(f"{what}: memory.score \"pkm\" needs tucker_rank 1 and "
                          "tucker_cores 1")
    if m["v_dim"] % m["tucker_cores"]:
        raise ConfigError(f"{what}: memory.tucker_cores {m['tucker_cores']} does not divide "
                          f"v_dim {m['v_dim']}")
    if m["ive_groups"] * m["tucker_cores"] > 255:
        raise ConfigError(f"{what}: field 'memory.tucker_cores' = {m['tucker_cores']} times "
                          f"ive_groups {m['ive_groups']} exceeds 255 lookup groups")
    if c["rope_theta"] > 0 and c["head_dim"] % 2:
        raise ConfigError(f"{what}: rope_theta > 0 needs an even head_dim "
                          f"(head_dim {c['head_dim']})")


def load_config(path):
    """Reads and validates a config.json. Returns: the normalized dict.
    Raises OSError for an unreadable file, ConfigError for a bad one."""
    with open(path, "r", encoding="utf-8") as f:
        text = f.read((1 << 20) + 1)
    if len(text) > 1 << 20:
        raise ConfigError(f"{path}: over 1 MiB")
    return parse_config(text, path)


def to_json_text(cfg):
    """Renders a normalized config as C's writer does (every key, query_norm
    as a string). Returns: the text, ending with a newline."""
    c = copy.deepcopy(cfg)
    order = ["format", "version", "vocab_size", "d_model", "n_layers", "n_heads", "head_dim",
             "segment_len", "infini_rule", "norm_eps", "rope_theta", "ffn_hidden", "moe",
             "memory", "layers"]
    return json.dumps({k: c[k] for k in order}, indent=2) + "\n"


def preset(name):
    """The C presets "tiny" and "small" (model_config.c). Returns: a
    normalized config. Raises ConfigError for other names."""
    base = {"format": FORMAT, "version": FORMAT_VERSION, "vocab_size": VOCAB_SIZE,
            "infini_rule": "delta", "norm_eps": 1e-5}
    if name == "tiny":
        base.update(d_model=64, n_heads=2, head_dim=32, segment_len=16, ffn_hidden=128,
                    moe={"experts": 4, "top_k": 2, "hidden": 64},
                    memory={"heads": 2, "n_keys": 16, "k_dim": 16, "tucker_rank": 2, "knn": 4,
                            "candidates": 4, "v_dim": 32, "ive_groups": 4, "skip": 1,
                            "weights": "softmax", "query_norm": "layernorm"},
                    layers=["dense", "memory", "moe", "dense"])
    elif name == "small":
        base.update(d_model=256, n_heads=4, head_dim=64, segment_len=128, ffn_hidden=768,
                    moe={"experts": 8, "top_k": 2, "hidden": 384},
                    memory={"heads": 2, "n_keys": 256, "k_dim": 64, "tucker_rank": 2,
                            "knn": 16, "candidates": 8, "v_dim": 128, "ive_groups": 4,
                            "skip": 1, "weights": "softmax", "query_norm": "layernorm"},
                    layers=["dense", "memory", "dense", "moe", "dense", "memory", "moe",
                            "dense"])
    else:
        raise ConfigError(f"unknown preset '{name}' (tiny, small)")
    base["n_layers"] = len(base["layers"])
    return parse_config(base, name)


def memory_layers(cfg):
    """Returns: the layer index of each memory table, in table order."""
    return [l for l, k in enumerate(cfg["layers"]) if k == "memory"]


def table_rows(cfg):
    """Returns: physical rows of each value table, n_keys^2 / ive_groups."""
    m = cfg["memory"]
    return m["n_keys"] * m["n_keys"] // m["ive_groups"]
