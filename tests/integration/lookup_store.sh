#!/usr/bin/env bash
# Distributed lookup served from real stores: `ultrashard import` builds a
# 3-shard store (f32) and a 2-shard store (int8, other placement seed) from a
# numpy tensor; shards serve their blocks from the mmap-ed shard files
# (push-down, and pull: ROWS messages on mpi, one-sided reads of the mapped
# blocks on fabric/tcp, and on fabric/shm loads from the same files mapped
# into the coordinator); coordinator 0 checks every batch against a gather
# over the whole store (tests/mpi/lookup_check.c --store).
set -euo pipefail
CHECK="$B/tests/mpi/lookup_check"
export FI_PROVIDER=tcp   # fabric runs below: tcp;ofi_rxm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp/t.npy" <<'PY'
import sys
import numpy as np
np.save(sys.argv[1], np.random.default_rng(7).standard_normal((5000, 24)).astype(np.float32))
PY
"$US_BIN" import --quiet --out "$tmp/s3" --table emb="$tmp/t.npy" --shards 3 --block-bits 6 --seed 9 >/dev/null
"$US_BIN" import --quiet --out "$tmp/s2" --table emb="$tmp/t.npy" --shards 2 --block-bits 5 --seed 4 --dtype int8 >/dev/null
check() {   # check N ARGS...
  local n=$1; shift
  local out
  out=$($MPIRUN -x FI_PROVIDER -n "$n" "$CHECK" "$@")
  echo "$out"
  grep -q "^lookup_check ok: 3 cases" <<<"$out"
  [ "$(grep -c " ok$" <<<"$out")" -eq 3 ]
}
check 4 --store "$tmp/s3" --table emb --transport mpi
check 3 --store "$tmp/s2" --table emb --transport mpi
check 4 --store "$tmp/s3" --table emb --transport fabric
check 2 --store "$tmp/s2" --table emb --transport fabric --all-roles
# shm: coordinators map the shards' store files and read rows in place
for st in s3 s2; do
  n=$([ $st = s3 ] && echo 4 || echo 3)
  out=$(FI_PROVIDER=shm check "$n" --store "$tmp/$st" --table emb --transport fabric)
  echo "$out" | tail -1
  grep -q "[1-9][0-9]* mapped$" <<<"$out"
done
# a job whose shard count differs from the store's is refused, not misrouted
set +e
$MPIRUN -n 3 "$CHECK" --store "$tmp/s3" --table emb >"$tmp/log" 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] && grep -qi "shard" "$tmp/log"
echo "lookup_store ok"
