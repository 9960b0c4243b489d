#!/usr/bin/env bash
# make bench-lookup: the distributed lookup against the single-process gather
# of the same batches (same run), 4 ranks (1 coordinator, 3 shards,
# oversubscribed on small boxes), mpi and fabric (shm) transports, push and
# pull, row and column placement; then fabric over tcp (tcp;ofi_rxm).
# JSON lines + a table per run. Threads pinned to 1 per rank. The baseline
# (ratio_vs_baseline) is rank 0's single-process gather of the same batches
# with the other ranks asleep (until 2026-12-04 it was timed between
# batches, sharing the cores with the shards' polling). mpi push row runs
# once more with two batches in flight per coordinator (--pipeline 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
MPIRUN=${MPIRUN:-"mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none"}
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# 100 batches on one host: 20 (~10 ms of lookups per configuration) left
# the ratios to warm-up and noise (mpi push row 0.33-0.40 over 3 runs vs
# 0.38-0.54 with 100, 2026-12-04). Over tcp 20: one-sided pull takes 30-170
# ms a batch there. ARGS (US_BENCH_LOOKUP_ARGS) come last and win.
ARGS=${US_BENCH_LOOKUP_ARGS:-"--rows 131072 --dim 128 --tokens 256 --k 32"}
BATCHES=${BATCHES:-100} TCP_BATCHES=${TCP_BATCHES:-20}
# two batches in flight: 300 (100 swung 0.29-0.39 between back-to-back runs)
PIPE_BATCHES=${PIPE_BATCHES:-300}
echo "== 4 ranks, mpi + fabric(shm): --batches $BATCHES $ARGS"
FI_PROVIDER=shm $MPIRUN -x FI_PROVIDER -n 4 "$B/ultrashard" bench lookup --batches "$BATCHES" $ARGS
echo "== 4 ranks, mpi push row, 2 batches in flight: --batches $PIPE_BATCHES --pipeline 2 $ARGS"
$MPIRUN -n 4 "$B/ultrashard" bench lookup --transports mpi --modes push --placements row \
  --pipeline 2 --batches "$PIPE_BATCHES" $ARGS
echo "== 4 ranks, fabric(tcp): --batches $TCP_BATCHES $ARGS"
FI_PROVIDER=tcp $MPIRUN -x FI_PROVIDER -n 4 "$B/ultrashard" bench lookup --transports fabric \
  --batches "$TCP_BATCHES" $ARGS
