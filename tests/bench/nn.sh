#!/usr/bin/env bash
# nn kernels: sgemm fast paths vs their scalar references in the same run
# (ratios, max difference, bytes), then a table. 1 BLAS thread, ~5 s.
set -euo pipefail
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
B=${B:-build}
out=$("$B/bench/bench_nn" "${NN_BENCH_SCALE:-1}")
echo "$out"
echo
printf '%-20s %-30s %12s %12s %9s %12s\n' case shape "fast us" "ref us" speedup "max rel diff"
echo "$out" | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("%-20s %-30s %12.1f %12.1f %8.1fx %12.2g" % (r["case"], r["shape"], r["fast_ns"] / 1e3,
          r["ref_ns"] / 1e3, r["speedup_vs_ref"], r["max_rel_diff"]))'
