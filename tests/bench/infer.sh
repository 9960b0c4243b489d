#!/usr/bin/env bash
# Batch inference throughput of the tiny preset: continuous batching with
# --batch 4 and 16 against --batch 1 (the baseline, same run, same prompts).
# JSON lines (one per run, plus ratios) then a short table. Single-threaded
# BLAS/OpenMP so the number is about batching, not thread contention.
# Output files are fsync-ed per sequence, as in production.
set -euo pipefail
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
B=${B:-build}
US_BIN=${US_BIN:-$B/ultrashard}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 1 >/dev/null
n=${US_BENCH_PROMPTS:-48}
for i in $(seq 1 "$n"); do
  printf '{"id":"p%d","prompt":"request %d: the quick brown fox jumps over the lazy dog","max_tokens":32}\n' "$i" "$i"
done > "$dir/in.jsonl"
timefmt=()
[ -x /usr/bin/time ] && timefmt=(/usr/bin/time -f '%M' -o "$dir/rss")
declare -A tps rss
for b in 1 4 16; do
  rm -f "$dir/out.jsonl" "$dir/out.jsonl.journal"
  line=$("${timefmt[@]}" "$US_BIN" infer --model "$dir/m" --input "$dir/in.jsonl" \
           --output "$dir/out.jsonl" --batch "$b" --batch-tokens $((b * 16)) --quiet)
  tps[$b]=$(echo "$line" | grep -o '"generated_tokens_per_s":[0-9.]*' | cut -d: -f2)
  rss[$b]=$( [ -f "$dir/rss" ] && cat "$dir/rss" || echo 0)
  echo "{\"bench\":\"infer\",\"preset\":\"tiny\",\"batch\":$b,\"max_rss_kib\":${rss[$b]},\"run\":$line}"
done
for b in 4 16; do
  r=$(awk -v a="${tps[$b]}" -v z="${tps[1]}" 'BEGIN { printf "%.2f", (z > 0) ? a / z : 0 }')
  echo "{\"bench\":\"infer\",\"batch\":$b,\"baseline_batch\":1,\"throughput_ratio\":$r}"
done
echo
printf '%-7s %16s %10s %14s\n' batch "gen tokens/s" "vs b=1" "max RSS KiB"
for b in 1 4 16; do
  r=$(awk -v a="${tps[$b]}" -v z="${tps[1]}" 'BEGIN { printf "%.2f", (z > 0) ? a / z : 0 }')
  printf '%-7s %16s %10s %14s\n' "$b" "${tps[$b]}" "${r}x" "${rss[$b]}"
done
