#!/usr/bin/env bash
# bench-store: import and verify throughput of a ROWS x DIM f32 table, as
# ratios to a plain sequential copy of the same bytes (dd, fsync at the end,
# like import's fsync) measured in the same run. Each measure is the median
# of REPS runs, interleaved with the baseline. Throughput uses the command's
# own timer (excludes MPI start-up); wall time is reported too.
# Memory: max RSS of any rank (/usr/bin/time); for verify (mmap) it includes
# the mapped file pages the rank touched.
# JSON lines on stdout (one per measure) and a short table at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
US_BIN=${US_BIN:-$PWD/$B/ultrashard}
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none}
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
ROWS=${ROWS:-262144}
DIM=${DIM:-256}
REPS=${REPS:-3}
T=$(mktemp -d /tmp/us_bench_store.XXXXXX)
trap 'rm -rf "$T"' EXIT

/usr/bin/python3 - "$T/in.npy" "$ROWS" "$DIM" <<'PYEOF'
import sys
import numpy as np
rows, dim = int(sys.argv[2]), int(sys.argv[3])
a = np.lib.format.open_memmap(sys.argv[1], mode="w+", dtype=np.float32, shape=(rows, dim))
rng = np.random.default_rng(1)
for r in range(0, rows, 65536):
    n = min(65536, rows - r)
    a[r:r + n] = rng.standard_normal((n, dim), dtype=np.float32)
a.flush()
PYEOF
BYTES=$((ROWS * DIM * 4))
cat "$T/in.npy" >/dev/null   # warm the page cache for every contender alike

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.9f\", $1 }"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
# the "seconds" of a command's JSON summary line; loud failure if missing
secs_of() {
  local v; v=$({ grep -o '"seconds":[0-9.]*' "$1" || true; } | head -1 | cut -d: -f2)
  [ -n "$v" ] || { echo "bench-store: no timing in $1:" >&2; cat "$1" >&2; return 1; }
  echo "$v"
}
# ranks' stderr lines may interleave under mpirun: match anywhere, never fail
maxrss() { { grep -Eo 'RSS_KB [0-9]+' "$1" || true; } | awk '{m = $2 > m ? $2 : m} END {print m + 0}'; }
TIME=(/usr/bin/time -f "RSS_KB %M")

copy_s=(); imp1=(); imp2=(); ver1=(); ver2=(); wall_imp2=(); rss_imp=0; rss_ver=0
for rep in $(seq 1 "$REPS"); do
  rm -f "$T/copy.bin"
  t0=$(now); dd if="$T/in.npy" of="$T/copy.bin" bs=4M conv=fsync status=none; t1=$(now)
  copy_s+=("$(calc "$t1 - $t0")")
  for n in 1 2; do
    rm -rf "$T/st$n"
    t0=$(now)
    $MPIRUN -n $n "${TIME[@]}" "$US_BIN" import --quiet --out "$T/st$n" --table v="$T/in.npy" \
      >"$T/imp.out" 2>"$T/imp.err" || { cat "$T/imp.err" >&2; echo "bench-store: import failed" >&2; exit 1; }
    t1=$(now)
    s=$(secs_of "$T/imp.out")
    if [ $n -eq 1 ]; then imp1+=("$s"); else imp2+=("$s"); wall_imp2+=("$(calc "$t1 - $t0")"); fi
    r=$(maxrss "$T/imp.err"); if [ "$r" -gt "$rss_imp" ]; then rss_imp=$r; fi
    $MPIRUN -n $n "${TIME[@]}" "$US_BIN" verify "$T/st$n" >"$T/ver.out" 2>"$T/ver.err" \
      || { cat "$T/ver.err" >&2; echo "bench-store: verify failed" >&2; exit 1; }
    s=$(secs_of "$T/ver.out")
    if [ $n -eq 1 ]; then ver1+=("$s"); else ver2+=("$s"); fi
    r=$(maxrss "$T/ver.err"); if [ "$r" -gt "$rss_ver" ]; then rss_ver=$r; fi
  done
done
copy=$(printf '%s\n' "${copy_s[@]}" | median)
row() {  # name ranks seconds rss_kb
  local gbs ratio
  gbs=$(calc "$BYTES / $3 / 1000000000")
  ratio=$(calc "$copy / $3")
  printf '{"bench":"store","measure":"%s","ranks":%d,"rows":%d,"dim":%d,"bytes":%d,"seconds":%.4f,"gb_per_s":%.3f,"ratio_to_copy":%.3f,"baseline_copy_seconds":%.4f,"max_rss_kb":%d}\n' \
    "$1" "$2" "$ROWS" "$DIM" "$BYTES" "$3" "$gbs" "$ratio" "$copy" "$4"
}
{
  row copy 1 "$copy" 0
  row import 1 "$(printf '%s\n' "${imp1[@]}" | median)" "$rss_imp"
  row import 2 "$(printf '%s\n' "${imp2[@]}" | median)" "$rss_imp"
  row verify 1 "$(printf '%s\n' "${ver1[@]}" | median)" "$rss_ver"
  row verify 2 "$(printf '%s\n' "${ver2[@]}" | median)" "$rss_ver"
} | tee "$T/json"
echo
echo "store bench: $ROWS x $DIM f32 ($((BYTES / 1048576)) MiB), median of $REPS; baseline = dd copy + fsync"
printf '%-8s %5s %9s %8s %13s %12s\n' measure ranks seconds GB/s ratio_to_copy max_rss_MiB
/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("%-8s %5d %9.3f %8.2f %13.2f %12.1f" % (r["measure"], r["ranks"], r["seconds"],
          r["gb_per_s"], r["ratio_to_copy"], r["max_rss_kb"] / 1024))
' "$T/json"
echo "import wall time incl. mpirun start-up, 2 ranks (median): $(printf '%s\n' "${wall_imp2[@]}" | median) s"
