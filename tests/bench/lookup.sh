#!/usr/bin/env bash
# make bench-lookup: the distributed lookup against the single-process gather
# of the same batches (same run), 4 ranks (1 coordinator, 3 shards,
# oversubscribed on small boxes), mpi and fabric (shm) transports, push and
# pull, row and column placement; then fabric over tcp (tcp;ofi_rxm).
# JSON lines + a table per run. Threads pinned to 1 per rank.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none"}
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
ARGS=${US_BENCH_LOOKUP_ARGS:-"--rows 131072 --dim 128 --tokens 256 --k 32 --batches 20"}
echo "== 4 ranks, mpi + fabric(shm): $ARGS"
FI_PROVIDER=shm $MPIRUN -x FI_PROVIDER -n 4 "$B/ultrashard" bench lookup $ARGS
echo "== 4 ranks, fabric(tcp): $ARGS"
FI_PROVIDER=tcp $MPIRUN -x FI_PROVIDER -n 4 "$B/ultrashard" bench lookup --transports fabric $ARGS
