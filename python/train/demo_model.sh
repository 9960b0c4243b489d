#!/usr/bin/env bash
# `make demo-model`: retrains deploy/demo-model from the Debian fortunes text
# (python/train/data.py split, python/train/train.py with the PyTorch twin),
# then scores the held-out split with the C engine (`ultrashard eval`).
# Training runs to 1200 steps or MINUTES (default 18) of wall time, whichever
# comes first (the LR schedule follows the larger fraction), so on a busy
# machine the run stops annealed with fewer steps. OUT (default
# build/demo-model-run): where the model is written; copy it over
# deploy/demo-model to replace the committed one.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
OUT=${OUT:-$B/demo-model-run}
MINUTES=${MINUTES:-18}
/usr/bin/python3 python/train/data.py --out "$B/data" >/dev/null
PYTHONPATH=python /usr/bin/python3 python/train/train.py --config python/train/configs/demo.json \
  --data "$B/data" --out "$OUT" --steps 1200 --batch 8 --window 256 --lr 3e-3 --seed 1 \
  --max-minutes "$MINUTES" --log "$OUT.log"
"$B/ultrashard" eval --model "$OUT" --text "$B/data/heldout.txt" --json --quiet
