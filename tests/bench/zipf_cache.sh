#!/usr/bin/env bash
# make bench-zipf_cache: the coordinator's hot-row cache under Zipf(1.0) keys
# (4 ranks: 1 coordinator, 3 shards; pull by ROWS messages over mpi), three
# ways alternated ROUNDS times: no cache, the default gated cache
# (coordinator/lookup/gate.h) and --cache-always; prints tokens/s, the
# ratio of each cache setting to "no cache" of the same round, bytes per
# token, p50 and how many batches used the cache. ~15 s at the defaults.
# BATCHES (default 400), ROUNDS (default 3), CACHE_BYTES (default 16 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none"}
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
BATCHES=${BATCHES:-400} ROUNDS=${ROUNDS:-3} CACHE_BYTES=${CACHE_BYTES:-16777216}
ARGS="--rows 262144 --dim 128 --tokens 256 --k 32 --batches $BATCHES --placements row --modes pull --transports mpi --zipf 1.0"
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([-0-9.]*\).*/\1/p"; }
echo "== Zipf(1.0) cache: $ARGS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-6s %-7s %11s %8s %9s %8s %14s\n" round cache tokens/s "vs none" B/token "p50 ms" cache_batches
declare -A all
for r in $(seq "$ROUNDS"); do
  none=""
  for v in none gate always; do
    case $v in
      none) extra="--cache-bytes 0" ;;
      gate) extra="--cache-bytes $CACHE_BYTES" ;;
      always) extra="--cache-bytes $CACHE_BYTES --cache-always" ;;
    esac
    json=$($MPIRUN -n 4 "$B/ultrashard" bench lookup $ARGS $extra | grep '^{')
    echo "$json" >&2
    tps=$(echo "$json" | field tokens_per_s)
    [ -z "$none" ] && none=$tps
    all[$v]="${all[$v]:-} $tps"
    sent=$(echo "$json" | field bytes_sent_per_token)
    recv=$(echo "$json" | field bytes_recv_per_token)
    awk -v r="$r" -v v="$v" -v t="$tps" -v n="$none" -v b="$sent + $recv" \
        -v p="$(echo "$json" | field p50_ms)" -v c="$(echo "$json" | field cache_batches)" \
        'BEGIN { split(b, x, " [+] "); printf "%-6s %-7s %11.0f %8.2f %9.0f %8s %14s\n", r, v, t, t / n, x[1] + x[2], p, c }'
  done
done
# Each setting is a separate run, seconds apart, on a shared box (no cache moved
# 283k-300k tokens/s between rounds on 2026-12-04): the medians over the
# rounds, and their ratio, are the summary; the per-round ratios above.
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mn=$(echo "${all[none]}" | median) mg=$(echo "${all[gate]}" | median) ma=$(echo "${all[always]}" | median)
awk -v n="$mn" -v g="$mg" -v a="$ma" 'BEGIN { printf "median over rounds: none %.0f, gate %.0f (%.2f x none), always %.0f (%.2f x none) tokens/s\n", n, g, g / n, a, a / n }'
