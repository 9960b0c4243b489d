#!/usr/bin/env bash
# 4 ranks: roles come from the project's start-up code; one Allreduce checked.
set -euo pipefail
out=$($MPIRUN -n 4 "$US_BIN" roles)
echo "$out"
grep -q "roles ok: 4 ranks, 1 coordinators, 3 shards, allreduce sum 6" <<<"$out"
[ "$(grep -c ': shard (' <<<"$out")" -eq 3 ]
grep -q "rank 0/4 .*: coordinator (coordinator 0, shard -1)" <<<"$out"

out=$($MPIRUN -n 4 "$US_BIN" roles --coordinators 2)
grep -q "roles ok: 4 ranks, 2 coordinators, 2 shards" <<<"$out"
out=$($MPIRUN -n 4 "$US_BIN" roles --all-roles)
grep -q "roles ok: 4 ranks, 4 coordinators, 4 shards" <<<"$out"

# bad role options are usage errors (exit 2), not crashes
set +e
$MPIRUN -n 2 "$US_BIN" roles --coordinators 2 >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] || { echo "expected failure for --coordinators 2 with 2 ranks"; exit 1; }
echo "mpi_smoke ok"
