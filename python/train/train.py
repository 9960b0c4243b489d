#!/usr/bin/python3
"""train.py — train a byte-level UltraShard model on text (PyTorch CPU).

  PYTHONPATH=python /usr/bin/python3 python/train/train.py \
      --config python/train/configs/demo.json --data build/data --out DIR \
      [--steps N] [--batch B] [--window W] [--lr LR] [--seed S] [--threads 2]

The model is the PyTorch twin of the C engine (python/ultrashard:
UltraShardModel, save_model), so DIR is a model directory that
`ultrashard infer` / `ultrashard eval` read as is. Each step takes B random
windows of W bytes from DATA/train.txt (python/train/data.py), half of them
starting at a fortune's first byte, each preceded by BOS as `infer` feeds a
prompt. W spans several Infini-attention segments (W / segment_len), so the
memory carried from one segment to the next is trained. AdamW (weight decay
on matrices only, the value tables get their own learning rate), linear
warm-up then cosine decay to lr/10, gradient clipping at 1. Progress lines
(loss, bits per byte, tokens/s) every --log-every steps; held-out bits per
byte (BOS + the whole of DATA/heldout.txt as one sequence, state carried
chunk by chunk) at the end. DIR/train.json records the arguments and results.
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

# On a shared, oversubscribed box OpenMP threads that spin while waiting
# starve each other (a run at the default policy was ~5x slower): sleep
# instead. Must be set before torch starts its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F

from ultrashard.io import save_model
from ultrashard.model import UltraShardModel

BOS = 256
LN2 = math.log(2.0)


def load_bytes(path):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)


def fortune_starts(data):
    """Offsets of every fortune's first byte (after an empty line)."""
    nl = data == 10
    starts = np.flatnonzero(nl[:-2] & nl[1:-1]) + 2
    return np.concatenate([[0], starts[starts < len(data)]])


class Windows:
    """Random training windows: [BOS] + W-1 bytes in, the W bytes out."""

    def __init__(self, data, window, seed):
        self.data, self.window = data, window
        self.starts = fortune_starts(data)
        self.starts = self.starts[self.starts + window <= len(data)]
        self.rng = np.random.default_rng(seed)

    def batch(self, b):
        half = b // 2
        offs = np.concatenate([
            self.rng.choice(self.starts, half),
            self.rng.integers(0, len(self.data) - self.window, b - half)])
        y = np.stack([self.data[o:o + self.window] for o in offs]).astype(np.int64)
        x = np.concatenate([np.full((b, 1), BOS), y[:, :-1]], axis=1)
        return torch.from_numpy(x), torch.from_numpy(y)


def param_groups(model, lr, value_lr_mult, wd):
    """Matrices decay, vectors (norms, gates) do not; value tables: own lr."""
    vids = {id(v) for v in model.values}
    decay, no_decay, vals = [], [], []
    for p in model.parameters():
        if id(p) in vids:
            vals.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": wd, "lr": lr, "base_lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": lr, "base_lr": lr}]
    if vals:
        groups.append({"params": vals, "weight_decay": 0.0,
                       "lr": lr * value_lr_mult, "base_lr": lr * value_lr_mult})
    return groups


def lr_factor(step, steps, warmup, progress=None):
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0.1 over
    `progress` (default step / steps) in [0, 1]."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup) if progress is None else progress
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@torch.no_grad()
def bits_per_byte(model, data, chunk=1024):
    """Bits per byte of BOS + data as one sequence, fed in chunks with the
    state carried (chunk: a multiple of segment_len)."""
    model.eval()
    toks = torch.from_numpy(np.concatenate([[BOS], data.astype(np.int64)]))
    state, nll = None, 0.0
    for s0 in range(0, len(data), chunk):
        x = toks[s0:s0 + chunk].unsqueeze(0)
        y = toks[s0 + 1:s0 + 1 + chunk]
        logits, state = model(x, state)
        nll += F.cross_entropy(logits[0, :len(y)], y, reduction="sum").item()
    model.train()
    return nll / len(data) / LN2


def train_loop(model, batches, opt, steps, log, log_every=10, warmup=30, clip=1.0,
               max_seconds=None):
    """Runs up to `steps` AdamW steps on batches() -> (x, y) or (x, y,
    per-byte loss weights). With max_seconds the
    schedule runs on the larger of the step and the time fraction and
    training stops when either is used up, so a run on a busy machine still
    ends annealed (fewer steps). Returns: a summary dict."""
    t0 = time.time()
    ema, done, tokens = None, 0, 0
    for step in range(steps):
        el = time.time() - t0
        frac = step / steps if max_seconds is None else max(step / steps, el / max_seconds)
        if frac >= 1.0:
            log(f"stopping at step {step}: time budget {max_seconds:.0f}s used")
            break
        f = lr_factor(step, steps, warmup, max(0.0, frac - warmup / steps) / (1 - warmup / steps))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        x, y, *w = batches()
        logits, _ = model(x)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                              reduction="none")
        # optional per-byte weights (passkey fine-tuning weights the answer)
        loss = (nll * w[0].reshape(-1)).sum() / w[0].sum() if w else nll.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        done, tokens = step + 1, tokens + y.numel()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        el = time.time() - t0
        if done % log_every == 0 or done == steps:
            log(f"step {done}/{steps} loss {loss.item():.4f} bpb {loss.item() / LN2:.3f} "
                f"(ema {ema / LN2:.3f}) lr {opt.param_groups[0]['lr']:.2e} "
                f"{tokens / el:.0f} tok/s elapsed {el:.0f}s")
    return {"steps_done": done, "tokens": tokens, "seconds": time.time() - t0,
            "train_bpb_ema": ema / LN2}


def keep_heap():
    """Keeps freed activation buffers in the heap (glibc mallopt: no mmap
    below 32 MiB, no trimming): each step reuses them instead of paying a
    page fault per 4 KiB, slow in this VM. Returns: nothing; best effort."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)     # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)      # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def make_logger(path):
    f = open(path, "a") if path else None

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        if f:
            f.write(line + "\n")
            f.flush()
    return log


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default="build/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--value-lr-mult", type=float, default=4.0)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-clock budget: the LR schedule follows the larger of the "
                    "step and time fractions and training stops when one reaches 1")
    ap.add_argument("--heldout-bytes", type=int, default=0,
                    help="score only the first N held-out bytes (0: all)")
    ap.add_argument("--log", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    keep_heap()
    log = make_logger(a.log)
    with open(a.config) as f:
        cfg = json.load(f)
    train = load_bytes(os.path.join(a.data, "train.txt"))
    held = load_bytes(os.path.join(a.data, "heldout.txt"))
    if a.heldout_bytes:
        held = held[:a.heldout_bytes]
    if a.window % cfg["segment_len"] or a.window < 2 * cfg["segment_len"]:
        log(f"--window {a.window}: must be a multiple of segment_len "
            f"{cfg['segment_len']} and span >= 2 segments")
        return 2
    # twin's init: N(0, init_std) weights as C's init-model, values U[-1, 1)
    model = UltraShardModel(cfg).init_random(a.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"config {a.config}: {n_params} parameters ({n_params * 4 / 2**20:.1f} MiB f32), "
        f"train {len(train)} B, held-out {len(held)} B, batch {a.batch} x {a.window}, "
        f"{a.steps} steps, {torch.get_num_threads()} threads")
    opt = torch.optim.AdamW(param_groups(model, a.lr, a.value_lr_mult, a.wd),
                            betas=(0.9, 0.95))
    win = Windows(train, a.window, a.seed)
    res = train_loop(model, lambda: win.batch(a.batch), opt, a.steps, log,
                     max_seconds=None if a.max_minutes is None else a.max_minutes * 60)
    t0 = time.time()
    res["heldout_bpb"] = bits_per_byte(model, held)
    res["heldout_bytes"] = len(held)
    log(f"held-out bits per byte {res['heldout_bpb']:.4f} over {len(held)} B "
        f"({time.time() - t0:.0f}s)")
    save_model(model, a.out)
    res.update({"args": vars(a), "parameters": n_params, "torch": torch.__version__})
    with open(os.path.join(a.out, "train.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    log(f"saved {a.out}: {json.dumps({k: v for k, v in res.items() if k != 'args'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
