#!/usr/bin/env bash
# `make bench-kernels`: memory-lookup kernels vs the machine's limits measured
# in the same run (see tests/bench/bench_kernels.c). JSON lines go to stdout
# and are appended to bench/results/kernels.jsonl; the human table to stderr.
# Runtime about 2-3 minutes with the default 1 GiB table (--table-mib N,
# --quick, --part gather|score|topk, --cpu-time are passed through).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
unset OMP_PROC_BIND   # pinning the main thread would pin OpenBLAS's threads too (LAB.md)
. tests/bench/lib/openblas_coretype.sh
mkdir -p bench/results
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
"$B/bench/bench_kernels" "$@" |
  sed -u "s/^{/{\"time\":\"$stamp\",\"commit\":\"$commit\",\"openblas_coretype\":\"${OPENBLAS_CORETYPE:-auto}\",/" |
  tee -a bench/results/kernels.jsonl
