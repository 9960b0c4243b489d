#!/usr/bin/env bash
# `make demo`: the main job on an embedded default. A tiny random model
# (Infini-attention, dense + MoE + UltraMem memory layers) and a 3-shard store
# of its memory values are created, then `infer` runs under mpirun with 4
# ranks: rank 0 decodes, ranks 1-3 serve the memory tables.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
US="$B/ultrashard"
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
work=${US_DEMO_DIR:-$B/demo}
rm -rf "$work"
mkdir -p "$work"

echo "== demo 1/3: init-model --preset tiny, store with 3 shards ($work)"
"$US" init-model --preset tiny --out "$work/model" --seed 1 --store "$work/store" --shards 3
"$US" inspect "$work/store" | head -12

cat >"$work/prompts.jsonl" <<'JSONL'
{"id": "greeting", "prompt": "Hello from UltraShard! ", "max_tokens": 24}
{"id": "memory", "prompt": "Memory layers read k rows out of millions: ", "max_tokens": 24}
{"id": "infini", "prompt": "Infini-attention keeps a compressive memory per head, so a long prompt runs in constant memory. ", "max_tokens": 24}
{"id": "sampled", "prompt": "Sampling with a seed: ", "max_tokens": 24}
JSONL

echo "== demo 2/3: mpirun -n 4 ultrashard infer (1 coordinator + 3 shard ranks)"
$MPIRUN -n 4 "$US" infer --model "$work/model" --store "$work/store" \
  --input "$work/prompts.jsonl" --output "$work/out.jsonl" --batch 4 --temperature 0.7 --seed 3

echo "== demo 3/3: outputs ($work/out.jsonl; a random model writes random bytes)"
cut -c1-160 "$work/out.jsonl"
