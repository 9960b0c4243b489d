#!/usr/bin/env bash
# `make demo`: the trained demo model (deploy/demo-model: a byte-level
# Infini-attention transformer with one UltraMem memory layer, trained on the
# Debian `fortunes` text, see its README.md) served the distributed way: its
# memory value table is imported into a 3-shard store, then `infer` runs
# under mpirun with 4 ranks (rank 0 decodes, ranks 1-3 serve the values) on a
# few English prompts with temperature / top-p sampling and a fixed seed, and
# each prompt is printed with its continuation as plain text.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
US="$B/ultrashard"
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
MODEL=${US_DEMO_MODEL:-deploy/demo-model}
work=${US_DEMO_DIR:-$B/demo}
rm -rf "$work"
mkdir -p "$work"

echo "== demo 1/3: import $MODEL/values/table_0.npy into a store with 3 shards ($work/store)"
"$US" import --out "$work/store" --table table_0="$MODEL/values/table_0.npy" --shards 3 \
  --block-bits 8 >/dev/null 2>"$work/import.log" \
  || { cat "$work/import.log" >&2; exit 1; }   # 16 blocks of 256 rows over the 3 shards
"$US" inspect "$work/store" | head -12

cat >"$work/prompts.jsonl" <<'JSONL'
{"id": "meaning", "prompt": "The meaning of life is", "max_tokens": 160}
{"id": "computer", "prompt": "A computer is", "max_tokens": 160}
{"id": "love", "prompt": "Love is", "max_tokens": 160}
{"id": "trust", "prompt": "Never trust", "max_tokens": 160}
{"id": "law", "prompt": "The first law of programming:", "max_tokens": 160}
{"id": "wise", "prompt": "A wise man once said", "max_tokens": 160}
JSONL

echo "== demo 2/3: mpirun -n 4 ultrashard infer (1 coordinator + 3 shard ranks), temperature 0.8, top-p 0.9, seed 7"
$MPIRUN -n 4 "$US" infer --model "$MODEL" --store "$work/store" --quiet \
  --input "$work/prompts.jsonl" --output "$work/out.jsonl" --batch 6 \
  --temperature 0.8 --top-p 0.9 --seed 7

echo "== demo 3/3: prompts and continuations (up to the end of the first fortune; $work/out.jsonl)"
/usr/bin/python3 deploy/demo_print.py "$work/prompts.jsonl" "$work/out.jsonl"
