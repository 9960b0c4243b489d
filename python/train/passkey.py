#!/usr/bin/python3
"""passkey.py — passkey retrieval (Infini-attention paper, sec. 4.2) with the C engine.

  passkey.py prompts --out FILE.jsonl [--lengths 1024,4096,16384,65536] [--n 10] [--seed 1]
  passkey.py score --output OUT.jsonl [--lengths ..] [--n ..] [--seed ..]
  passkey.py run --model DIR [--us build/ultrashard] [--work DIR] [--lengths ..] [--n ..]
  passkey.py finetune --init DIR --out DIR [--steps N] [--batch B] [--window W]
                      [--data build/data] [--seconds S]

A prompt hides a 5-digit pass key at a random depth in repeated filler text
("The grass is green. The sky is blue. ...", as in the paper) padded to the
target length in bytes, and ends with the question "What is the pass key?
The pass key is". `run` writes the prompts, decodes each with
`ultrashard infer --temperature 0` (greedy, 8 bytes) and scores: exact (the
first 5 digits after optional spaces equal the key) and per-digit accuracy
(chance 0.1), per length, plus the decoder's fixed memory per sequence
(state_bytes / batch from infer's summary: Infini-attention M, z and the
current segment's K/V cache of every layer). `finetune` continues training a
model directory (python/ultrashard load_model) on passkey-style samples of
the training window's length (key in the first half, loss on every byte,
answer digits weighted --answer-weight, default 8) mixed with fortune windows
(--passkey-share of the batch, default half), for a number of steps or
seconds, and saves it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

INTRO = ("There is an important info hidden inside a lot of irrelevant text. "
         "Find it and memorize it. I will quiz you about the important "
         "information there.\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\nWhat is the pass key? The pass key is"


def needle(key):
    return f"The pass key is {key}. Remember it. {key} is the pass key. "


def make_prompt(length, key, depth):
    """A prompt of exactly `length` bytes (>= the fixed parts) with the key's
    sentence after a `depth` (0..1) fraction of the filler."""
    fixed = len(INTRO) + len(needle(key)) + len(QUESTION)
    n_fill = max(0, length - fixed)
    fill = (FILLER * (n_fill // len(FILLER) + 1))[:n_fill]
    cut = int(depth * n_fill)
    cut = fill.rfind(" ", 0, cut) + 1 if cut > 0 else 0   # at a word boundary
    return INTRO + fill[:cut] + needle(key) + fill[cut:] + QUESTION


def prompts(lengths, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths:
        for i in range(n):
            key = int(rng.integers(10000, 100000))
            depth = float(rng.uniform(0.0, 1.0))
            out.append({"id": f"L{length}-{i}", "prompt": make_prompt(length, key, depth),
                        "max_tokens": 8, "key": str(key), "length": length,
                        "depth": round(depth, 3)})
    return out


def write_prompts(rows, path):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "prompt": r["prompt"],
                                "max_tokens": r["max_tokens"]}) + "\n")


def answer_digits(tokens):
    """The first 5 bytes after leading spaces, as text (non-digits kept)."""
    b = bytes(t for t in tokens if t < 256).lstrip(b" ")
    return b[:5].decode("latin-1")


def score(rows, out_path):
    got = {}
    with open(out_path) as f:
        for line in f:
            r = json.loads(line)
            got[r["id"]] = answer_digits(r["tokens"])
    table = {}
    for r in rows:
        a = got.get(r["id"], "")
        t = table.setdefault(r["length"], {"n": 0, "exact": 0, "digits": 0, "answers": []})
        t["n"] += 1
        t["exact"] += a == r["key"]
        t["digits"] += sum(1 for x, y in zip(a, r["key"]) if x == y)
        t["answers"].append(f"{r['key']}->{a}")
    res = []
    for length in sorted(table):
        t = table[length]
        res.append({"length_bytes": length, "prompts": t["n"],
                    "exact_accuracy": t["exact"] / t["n"],
                    "digit_accuracy": t["digits"] / (5 * t["n"]),
                    "examples": t["answers"][:3]})
    return res


def run(a):
    rows = prompts(a.lengths, a.n, a.seed)
    os.makedirs(a.work, exist_ok=True)
    pin, pout = os.path.join(a.work, "passkey.jsonl"), os.path.join(a.work, "out.jsonl")
    write_prompts(rows, pin)
    for p in (pout, pout + ".journal"):
        if os.path.exists(p):
            os.remove(p)
    cmd = [a.us, "infer", "--model", a.model, "--input", pin, "--output", pout,
           "--temperature", "0", "--batch", str(a.batch), "--batch-tokens", "1024", "--quiet"]
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    res = score(rows, pout)
    state = summary["state_bytes"] // a.batch
    for r in res:
        r["state_bytes_per_sequence"] = state
    print(json.dumps({"model": a.model, "command": " ".join(cmd), "seconds": round(time.time() - t0, 1),
                      "state_bytes_per_sequence": state, "results": res}, indent=1))
    return 0


def passkey_window(rng, window):
    """One fine-tuning sample: BOS + a passkey prompt of `window` bytes
    (answer included), the key in the first half; returns bytes and the
    offsets of the answer digits."""
    key = str(int(rng.integers(10000, 100000)))
    body = make_prompt(window - 7, int(key), float(rng.uniform(0.0, 0.5))) + " " + key + ".\n"
    b = body.encode()[:window]
    pos = len(b) - 7
    return b, list(range(pos + 1, pos + 6))


def finetune(a):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see train.py
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train as T
    from ultrashard.io import load_model, save_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    T.keep_heap()
    log = T.make_logger(a.log)
    model = load_model(a.init)
    model.train()
    data = T.load_bytes(os.path.join(a.data, "train.txt"))
    win = T.Windows(data, a.window, a.seed)
    rng = np.random.default_rng(a.seed)
    opt = torch.optim.AdamW(T.param_groups(model, a.lr, 4.0, 0.0), betas=(0.9, 0.95))

    def batch():
        x, y = win.batch(a.batch)
        w = torch.ones_like(y, dtype=torch.float32)
        for i in range(int(round(a.batch * a.passkey_share))):
            b, ans = passkey_window(rng, a.window)
            yi = torch.tensor(list(b), dtype=torch.int64)
            y[i] = yi
            x[i, 1:] = yi[:-1]
            w[i, ans] = a.answer_weight
        return x, y, w

    res = T.train_loop(model, batch, opt, a.steps, log, log_every=5, warmup=5,
                       max_seconds=a.seconds)
    save_model(model, a.out)
    info = {"init": a.init, "steps_done": res["steps_done"], "seconds": round(res["seconds"], 1),
            "train_bpb_ema": res["train_bpb_ema"], "args": vars(a)}
    with open(os.path.join(a.out, "finetune.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    log(f"saved {a.out}: {info['steps_done']} steps in {info['seconds']} s")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lens = lambda s: [int(x) for x in s.split(",")]
    pp = sub.add_parser("prompts")
    sp = sub.add_parser("score")
    rp = sub.add_parser("run")
    for p in (pp, rp, sp):   # the prompt set: score regenerates it
        p.add_argument("--lengths", type=lens, default=[1024, 4096, 16384, 65536])
        p.add_argument("--n", type=int, default=10)
        p.add_argument("--seed", type=int, default=1)
    pp.add_argument("--out", required=True)
    sp.add_argument("--output", required=True)
    rp.add_argument("--model", required=True)
    rp.add_argument("--us", default="build/ultrashard")
    rp.add_argument("--work", default="build/passkey")
    rp.add_argument("--batch", type=int, default=8)
    fp = sub.add_parser("finetune")
    fp.add_argument("--init", required=True)
    fp.add_argument("--out", required=True)
    fp.add_argument("--data", default="build/data")
    fp.add_argument("--steps", type=int, default=40)
    fp.add_argument("--seconds", type=float, default=300)
    fp.add_argument("--batch", type=int, default=8)
    fp.add_argument("--window", type=int, default=512)
    fp.add_argument("--lr", type=float, default=1e-3)
    fp.add_argument("--passkey-share", type=float, default=0.5,
                    help="fraction of each batch that is passkey windows (rest: fortunes)")
    fp.add_argument("--answer-weight", type=float, default=8.0,
                    help="loss weight of each answer digit (other bytes: 1)")
    fp.add_argument("--seed", type=int, default=7)
    fp.add_argument("--threads", type=int, default=2)
    fp.add_argument("--log", default=None)
    a = ap.parse_args()
    if a.cmd == "prompts":
        write_prompts(prompts(a.lengths, a.n, a.seed), a.out)
        return 0
    if a.cmd == "score":
        print(json.dumps(score(prompts(a.lengths, a.n, a.seed), a.output), indent=1))
        return 0
    if a.cmd == "run":
        return run(a)
    return finetune(a)


if __name__ == "__main__":
    sys.exit(main())
