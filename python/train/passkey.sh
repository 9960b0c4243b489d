#!/usr/bin/env bash
# `make passkey`: passkey retrieval (python/train/passkey.py) of the demo
# model with the C engine (greedy, 10 prompts per length at 1K, 4K, 16K and
# 64K bytes), then a short fine-tune of it on passkey-style windows (STEPS
# steps or FT_SECONDS of wall time, default 300) with the PyTorch twin, and the
# same evaluation of the fine-tuned model. Results: $OUT/before.json,
# $OUT/after.json and a table on stdout. The fine-tuned model stays in
# $OUT/model-ft (not committed). Env: MODEL (deploy/demo-model), OUT
# (build/passkey), N (10), STEPS (400), FT_SECONDS (300), WINDOW (512),
# FT_ARGS (more passkey.py finetune options, e.g. "--answer-weight 32
# --passkey-share 0.75 --lr 2e-3").
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
MODEL=${MODEL:-deploy/demo-model} OUT=${OUT:-$B/passkey} N=${N:-10}
STEPS=${STEPS:-400} FT_SECONDS=${FT_SECONDS:-300} WINDOW=${WINDOW:-512}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
PY=/usr/bin/python3
mkdir -p "$OUT"
[ -f "$B/data/train.txt" ] || $PY python/train/data.py --out "$B/data" >/dev/null
if [ ! -f "$OUT/before.json" ]; then
  $PY python/train/passkey.py run --model "$MODEL" --us "$B/ultrashard" --work "$OUT/run-before" \
    --n "$N" >"$OUT/before.json"
fi
if [ ! -f "$OUT/model-ft/finetune.json" ]; then
  PYTHONPATH=python OMP_NUM_THREADS=2 $PY python/train/passkey.py finetune --init "$MODEL" \
    --out "$OUT/model-ft" --data "$B/data" --steps "$STEPS" --seconds "$FT_SECONDS" \
    --window "$WINDOW" --log "$OUT/finetune.log" ${FT_ARGS:-}
fi
$PY python/train/passkey.py run --model "$OUT/model-ft" --us "$B/ultrashard" --work "$OUT/run-after" \
  --n "$N" >"$OUT/after.json"
"$B/ultrashard" eval --model "$OUT/model-ft" --text "$B/data/heldout.txt" --json --quiet \
  >"$OUT/after-eval.json"
$PY - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
b, a = json.load(open(f"{out}/before.json")), json.load(open(f"{out}/after.json"))
ft = json.load(open(f"{out}/model-ft/finetune.json"))
ev = json.loads(open(f"{out}/after-eval.json").read())
print(f"fine-tune: {ft['steps_done']} steps in {ft['seconds']} s; held-out bits/byte after: "
      f"{ev['bits_per_byte']:.3f}; memory per sequence {b['state_bytes_per_sequence']} bytes "
      "(whatever the length)")
print("| prompt bytes | prompts | exact before | digits before | exact after | digits after | "
      "state bytes / sequence |")
print("|---|---|---|---|---|---|---|")
for rb, ra in zip(b["results"], a["results"]):
    print(f"| {rb['length_bytes']} | {rb['prompts']} | {rb['exact_accuracy']:.2f} | "
          f"{rb['digit_accuracy']:.2f} | {ra['exact_accuracy']:.2f} | {ra['digit_accuracy']:.2f} | "
          f"{rb['state_bytes_per_sequence']} |")
PY
