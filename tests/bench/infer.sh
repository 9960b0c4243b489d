#!/usr/bin/env bash
# Batch inference throughput of the tiny preset (US_BENCH_PRESET=small for
# the other one; US_BENCH_PROMPTS=N prompts, default 160): continuous batching with
# --batch 4 and 16 against --batch 1 (the baseline, same run, same prompts).
# JSON lines (one per run, plus ratios) then a short table. Single-threaded
# BLAS/OpenMP so the number is about batching, not thread contention.
# The job's output and journal go to /dev/shm when it exists: their per-
# sequence fsync costs milliseconds on this disk and varies with the other
# users of the machine, which would drown the compute being compared. Each
# batch size runs 3 times; the best run counts (the box is shared and noisy).
set -euo pipefail
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
B=${B:-build}
US_BIN=${US_BIN:-$B/ultrashard}
dir=$(mktemp -d); out=$( [ -d /dev/shm ] && mktemp -d -p /dev/shm || mktemp -d )
trap 'rm -rf "$dir" "$out"' EXIT
preset=${US_BENCH_PRESET:-tiny}
"$US_BIN" init-model --preset "$preset" --out "$dir/m" --seed 1 >/dev/null
n=${US_BENCH_PROMPTS:-160}
for i in $(seq 1 "$n"); do
  printf '{"id":"p%d","prompt":"request %d: the quick brown fox jumps over the lazy dog","max_tokens":32}\n' "$i" "$i"
done > "$dir/in.jsonl"
timefmt=()
[ -x /usr/bin/time ] && timefmt=(/usr/bin/time -f '%M' -o "$dir/rss")
declare -A tps rss
for b in 1 4 16; do
  tps[$b]=0
  for rep in 1 2 3; do
    rm -f "$out/out.jsonl" "$out/out.jsonl.journal"
    line=$("${timefmt[@]}" "$US_BIN" infer --model "$dir/m" --input "$dir/in.jsonl" \
             --output "$out/out.jsonl" --batch "$b" --batch-tokens $((b * 16)) --quiet)
    t=$(echo "$line" | grep -o '"generated_tokens_per_s":[0-9.]*' | cut -d: -f2)
    r=$( [ -f "$dir/rss" ] && cat "$dir/rss" || echo 0)
    echo "{\"bench\":\"infer\",\"preset\":\"$preset\",\"batch\":$b,\"rep\":$rep,\"max_rss_kib\":$r,\"run\":$line}"
    if awk -v a="$t" -v b="${tps[$b]}" 'BEGIN { exit !(a > b) }'; then tps[$b]=$t; rss[$b]=$r; fi
  done
done
for b in 4 16; do
  r=$(awk -v a="${tps[$b]}" -v z="${tps[1]}" 'BEGIN { printf "%.2f", (z > 0) ? a / z : 0 }')
  echo "{\"bench\":\"infer\",\"batch\":$b,\"baseline_batch\":1,\"throughput_ratio\":$r}"
done
echo
printf '%-7s %16s %10s %14s\n' batch "gen tokens/s" "vs b=1" "max RSS KiB"   # best of 3
for b in 1 4 16; do
  r=$(awk -v a="${tps[$b]}" -v z="${tps[1]}" 'BEGIN { printf "%.2f", (z > 0) ? a / z : 0 }')
  printf '%-7s %16s %10s %14s\n' "$b" "${tps[$b]}" "${r}x" "${rss[$b]}"
done
