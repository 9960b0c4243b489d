#!/usr/bin/env bash
# Distributed lookup over the mpi transport equals the single-process gather
# (tests/mpi/lookup_check.c: row/column placement x 2 seeds x push/pull/auto,
# dtypes, IVE groups, cache) for 1, 2, 3, 4 and 8 ranks, with 2 coordinators
# and with every rank in both roles; then malformed requests to a shard.
# The 4-rank f32 outputs are also checked by numpy (tests/ref/lookup.py).
set -euo pipefail
CHECK="$B/tests/mpi/lookup_check"
run() {   # run N ARGS...: one job; every case must print ok
  local n=$1; shift
  local out
  out=$($MPIRUN -n "$n" "$CHECK" --transport mpi "$@")
  echo "$out"
  grep -q "^lookup_check ok:" <<<"$out"
  ! grep -q " FAIL$" <<<"$out"
}
run 1
run 2
run 3
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
run 4 --dump "$dump"
# independent check: numpy float64 from the synthetic formula, no UltraShard code
/usr/bin/python3 tests/ref/lookup.py "$dump"
[ "$(ls "$dump"/*.meta | wc -l)" -ge 2 ]
run 8 --quick
run 4 --coordinators 2
run 3 --all-roles
out=$(run 4 --malformed)
for code in "bad magic .*EPROTO" "truncated .*EPROTO" "row out of range .*ERANGE" \
            "row not held .*ENOTFOUND" "wrong table .*ENOTFOUND" "unsorted tokens .*EPROTO" \
            "NaN weight .*EPROTO" "after malformed rounds: normal batch"; do
  grep -q "$code" <<<"$out" || { echo "missing: $code"; exit 1; }
done
run 1 --malformed >/dev/null
echo "lookup_mpi ok"
