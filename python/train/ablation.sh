#!/usr/bin/env bash
# `make ablation`: dense vs MoE vs UltraMem at toy scale, equal activated
# parameters per token (python/train/ablation.py), the same training budget
# (STEPS steps of BATCH x WINDOW bytes, the same data order per seed), SEEDS
# seeds each, trained one at a time with the PyTorch twin; then, with the C
# engine, held-out bits per byte (`ultrashard eval`, whole held-out split) and
# decode speed (`ultrashard infer`, 32 prompts x 128 tokens at batch 16,
# greedy, 1 thread, all models alternated ROUNDS times, the median of a
# model's runs over rounds and seeds). Results: one JSON
# line per run in $OUT/results.jsonl and the README table on stdout.
# Finished steps are kept (a rerun skips trained models and done evals).
# Env: STEPS (240), BATCH (8), WINDOW (256), SEEDS ("1 2"), ROUNDS (3),
# OUT (build/ablation), MODELS ("dense moe ultramem").
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
US="$B/ultrashard"
STEPS=${STEPS:-240} BATCH=${BATCH:-8} WINDOW=${WINDOW:-256} SEEDS=${SEEDS:-1 2}
ROUNDS=${ROUNDS:-3} OUT=${OUT:-build/ablation} MODELS=${MODELS:-dense moe ultramem}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1
PY="/usr/bin/python3"
mkdir -p "$OUT"
[ -f "$B/data/heldout.txt" ] || $PY python/train/data.py --out "$B/data" >/dev/null
$PY python/train/ablation.py configs --out "$OUT/configs" >"$OUT/counts.jsonl"
cat "$OUT/counts.jsonl"
for seed in $SEEDS; do
  for m in $MODELS; do
    dir="$OUT/$m-s$seed"
    if [ -f "$dir/train.json" ]; then echo "== $m seed $seed: trained ($dir)"; continue; fi
    echo "== $m seed $seed: $STEPS steps of $BATCH x $WINDOW bytes"
    PYTHONPATH=python $PY python/train/train.py --config "$OUT/configs/$m.json" \
      --data "$B/data" --out "$dir" --steps "$STEPS" --batch "$BATCH" --window "$WINDOW" \
      --seed "$seed" --heldout-bytes 16384 --log "$OUT/$m-s$seed.log" | tail -2
  done
done

# decode speed of the exact models, alternated
for i in $(seq 32); do
  printf '{"id":"p%d","prompt":"A computer is %d","max_tokens":128}\n' "$i" "$i"
done >"$OUT/prompts.jsonl"
rm -f "$OUT/speed.jsonl"
for r in $(seq "$ROUNDS"); do
  for seed in $SEEDS; do
    for m in $MODELS; do
      o="$OUT/speed-out.jsonl"; rm -f "$o" "$o.journal"
      OMP_NUM_THREADS=1 "$US" infer --model "$OUT/$m-s$seed" --input "$OUT/prompts.jsonl" \
        --output "$o" --batch 16 --temperature 0 --quiet |
        $PY -c "import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(json.dumps({'model':'$m','seed':$seed,'round':$r,'tps':r['generated_tokens_per_s']}))" \
        >>"$OUT/speed.jsonl"
    done
  done
done

rm -f "$OUT/results.jsonl"
for seed in $SEEDS; do
  for m in $MODELS; do
    [ -s "$OUT/$m-s$seed.eval.json" ] ||
      "$US" eval --model "$OUT/$m-s$seed" --text "$B/data/heldout.txt" --json --quiet \
        >"$OUT/$m-s$seed.eval.json"
    $PY - "$OUT" "$m" "$seed" <<'PY' >>"$OUT/results.jsonl"
import json, sys
out, m, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
tr = json.load(open(f"{out}/{m}-s{seed}/train.json"))
ev = json.loads(open(f"{out}/{m}-s{seed}.eval.json").read().strip().splitlines()[-1])
counts = {r["model"]: r for r in map(json.loads, open(f"{out}/counts.jsonl"))}
tps = sorted(r["tps"] for r in map(json.loads, open(f"{out}/speed.jsonl")) if r["model"] == m)
print(json.dumps({"model": m, "seed": seed, "steps": tr["steps_done"], "tokens": tr["tokens"],
                  "train_seconds": tr["seconds"], "train_bpb_ema": tr["train_bpb_ema"],
                  "heldout_bpb_twin_16k": tr["heldout_bpb"], "heldout_bpb_c": ev["bits_per_byte"],
                  "infer_tokens_per_s_median": tps[len(tps) // 2] if tps else None,
                  "infer_tokens_per_s_all": tps,
                  "total_params": counts[m]["total_params"],
                  "activated_params": counts[m]["activated_params"]}))
PY
  done
done
cat "$OUT/results.jsonl"
$PY python/train/ablation.py table "$OUT/results.jsonl"
