#!/usr/bin/python3
"""torch_equiv.py — the PyTorch twin (python/ultrashard) against C logits.

  torch_equiv.py check MODEL_DIR TOKENS.i32 C_LOGITS.f32 [--rel R] [--mutate K=V ...]
      twin logits of the token sequence, fed three ways (one call; chunks of
      7 tokens with the state carried; a batch of two sequences of which
      the first is this one), each compared with the C logits written by
      build/tools/model_logits: pass when max |diff| <= R * max |C logit|
      (default R 1e-4). With --mutate the twin runs a changed config on the
      same weights (K is a config key, "memory.K" for the memory object;
      weights the new config lacks are dropped, new ones zero) and the
      check must then FAIL: exit 0 only if the mutated twin is outside R.
  torch_equiv.py batch LIST TOKENS.i32 [--rel R]
      `check` for each line "LABEL MODEL_DIR C_LOGITS.f32 [K=V ...]" of LIST
      (with K=V: a mutated twin that must fail); one process for all.
  torch_equiv.py save CONFIG.json OUT_DIR SEED [CONFIG.json OUT_DIR SEED ...]
      twins with random weights (UltraShardModel.init_random) written by
      ultrashard.io.save_model, for C to load.
  torch_equiv.py grad MODEL_DIR
      the twin in float64: a loss over 40 tokens is backpropagated; every
      parameter and value table must get a finite gradient, and the
      gradients of a few entries (a value, every weight of the first memory
      layer, attention weights) must equal central finite differences
      within 1e-5 relative (the memory selection does not move for such
      small steps).
  torch_equiv.py config LIST
      each line "CONFIG.json V": V = 0 if C accepts the file, 1 if C refuses
      it; fails naming every file that ultrashard.config judges otherwise.
  torch_equiv.py tokens OUT.i32 N SEED
      BOS then N - 1 random bytes.
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "python"))
from ultrashard import config as usconfig  # noqa: E402
from ultrashard.io import load_model, save_model  # noqa: E402
from ultrashard.model import UltraShardModel  # noqa: E402


def mutated(model, mutations):
    """A twin with `mutations` applied to its config and the same weights
    (by name; dropped or zero where the shapes of the two configs differ)."""
    cfg = copy.deepcopy(model.cfg)
    for m in mutations:
        key, val = m.split("=", 1)
        obj = cfg
        if key.startswith("memory."):
            obj, key = cfg["memory"], key[len("memory."):]
        try:
            obj[key] = json.loads(val)
        except ValueError:     # a bare string such as pkm
            obj[key] = val
    twin = UltraShardModel(cfg, [v.detach() for v in model.values])
    old = dict(model.named_weights())
    with torch.no_grad():
        for name, p in twin.named_weights():
            if name in old and old[name].numel() == p.numel():
                p.copy_(old[name].reshape(p.shape))
    return twin


def run_ways(model, tokens):
    """Logits [3][T][V] of the three feeding ways described above."""
    x = torch.from_numpy(tokens.astype(np.int64))[None]
    with torch.no_grad():
        whole = model(x)[0][0]
        state, parts = None, []
        for i in range(0, x.shape[1], 7):
            out, state = model(x[:, i:i + 7], state)
            parts.append(out[0])
        other = (x * 7 + 3) % 256
        batch = model(torch.cat([x, other], 0))[0][0]
    return [whole, torch.cat(parts), batch]


def check_one(label, model_dir, tokens_path, c_path, rel, mutate):
    """One comparison (see `check`). Returns: True when it came out as
    expected (inside rel; outside rel for a mutated twin)."""
    model = load_model(model_dir)
    if mutate:
        model = mutated(model, mutate)
    tokens = np.fromfile(tokens_path, "<i4")
    c = np.fromfile(c_path, "<f4").astype(np.float64)
    V = model.cfg["vocab_size"]
    if c.size != tokens.size * V:
        print(f"FAIL: {c_path} has {c.size} logits, want {tokens.size} x {V}")
        return False
    c = c.reshape(tokens.size, V)
    scale = float(np.abs(c).max())
    rels = [float(np.abs(w.double().numpy() - c).max()) / scale
            for w in run_ways(model, tokens)]
    what = f"mutated ({' '.join(mutate)})" if mutate else "twin"
    print(f"{label}{what}: {tokens.size} positions, max |C logit| {scale:.3f}, max rel diff "
          f"{rels[0]:.2e} (one call), {rels[1]:.2e} (chunks of 7), {rels[2]:.2e} "
          f"(batch of 2), tol {rel:g}")
    inside = all(r <= rel for r in rels)
    if mutate and inside:
        print("FAIL: the mutated twin still matches C: the check cannot see this change")
    elif not mutate and not inside:
        print("FAIL: outside tolerance")
    return inside != bool(mutate)


def cmd_check(a):
    return 0 if check_one("", a.model_dir, a.tokens, a.c_logits, a.rel, a.mutate) else 1


def cmd_batch(a):
    ok = True
    with open(a.list) as f:
        for line in f:
            if line.strip():
                label, model_dir, c_path, *mutate = line.split()
                ok &= check_one(label + ": ", model_dir, a.tokens, c_path, a.rel, mutate)
    return 0 if ok else 1


def cmd_save(a):
    for config_path, out_dir, seed in zip(a.args[0::3], a.args[1::3], a.args[2::3]):
        cfg = usconfig.load_config(config_path)
        save_model(UltraShardModel(cfg).init_random(int(seed)), out_dir)
    return 0


def cmd_grad(a):
    model = load_model(a.model_dir, dtype=torch.float64)
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 40)))

    def loss():
        logits = model(x)[0]
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 x[:, 1:].reshape(-1))
    model.zero_grad()
    loss().backward()
    dead = [n for n, p in model.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().max() == 0]
    if dead:
        print(f"FAIL: no gradient for {dead}")
        return 1
    first = usconfig.memory_layers(model.cfg)[0]
    probes = ["values.0", "layers.0.attn.wq", "layers.0.attn.beta"] + \
        [n for n, _ in model.named_weights() if n.startswith(f"layers.{first}.mem.")]
    worst = 0.0
    for name in probes:
        p = dict(model.named_parameters())[name]
        i = int(p.grad.abs().argmax())        # the entry with the largest gradient
        g = float(p.grad.view(-1)[i])
        with torch.no_grad():
            old = float(p.view(-1)[i])
            h = 1e-6 * max(1.0, abs(old))
            p.view(-1)[i] = old + h
            up = float(loss())
            p.view(-1)[i] = old - h
            down = float(loss())
            p.view(-1)[i] = old
        fd = (up - down) / (2 * h)
        rel = abs(fd - g) / max(abs(g), 1e-12)
        worst = max(worst, rel)
        if not rel <= 1e-5:
            print(f"FAIL: {name}[{i}]: autograd {g:.6e}, finite difference {fd:.6e}")
            return 1
    print(f"all {len(list(model.parameters()))} parameters get gradients; {len(probes)} probes "
          f"match finite differences (worst rel {worst:.1e})")
    return 0


def cmd_config(a):
    bad = 0
    with open(a.list) as f:
        for line in f:
            path, c_verdict = line.split()
            try:
                usconfig.load_config(path)
                mine, msg = "0", "accepted"
            except usconfig.ConfigError as e:
                mine, msg = "1", str(e)
            if mine != c_verdict:
                print(f"FAIL: {path}: C {'refuses' if c_verdict == '1' else 'accepts'} it, "
                      f"the twin: {msg}")
                bad += 1
    return 1 if bad else 0


def cmd_tokens(a):
    rng = np.random.default_rng(a.seed)
    np.concatenate([[usconfig.TOKEN_BOS], rng.integers(0, 256, a.n - 1)]) \
        .astype("<i4").tofile(a.out)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("model_dir")
    c.add_argument("tokens")
    c.add_argument("c_logits")
    c.add_argument("--rel", type=float, default=1e-4)
    c.add_argument("--mutate", nargs="+", default=[])
    b = sub.add_parser("batch")
    b.add_argument("list")
    b.add_argument("tokens")
    b.add_argument("--rel", type=float, default=1e-4)
    s = sub.add_parser("save")
    s.add_argument("args", nargs="+", help="CONFIG.json OUT_DIR SEED, repeated")
    g = sub.add_parser("grad")
    g.add_argument("model_dir")
    sub.add_parser("config").add_argument("list")
    t = sub.add_parser("tokens")
    t.add_argument("out")
    t.add_argument("n", type=int)
    t.add_argument("seed", type=int)
    a = p.parse_args()
    torch.set_num_threads(1)
    return {"check": cmd_check, "batch": cmd_batch, "save": cmd_save, "grad": cmd_grad,
            "config": cmd_config, "tokens": cmd_tokens}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
