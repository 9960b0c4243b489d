#!/usr/bin/env bash
# `make demo`: the most complete end-to-end job that exists, on an embedded
# default small enough for a 2-core machine. Extended as the product grows.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1}
echo "== demo: 4-rank job, roles assigned by ultrashard's start-up code"
$MPIRUN -n 4 "$B/ultrashard" roles
