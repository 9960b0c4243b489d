#!/usr/bin/env bash
# reshard: grow 3 -> 4, shrink 4 -> 2, and 2 -> 1; moved fraction near the
# jump-hash ideal; every row proven unchanged (by reshard itself, by verify
# --against the source tensors, and by the independent numpy reader).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d /tmp/us_reshard.XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
$PY - "$T" <<'PYEOF'
import sys
import numpy as np
rng = np.random.default_rng(8)
np.save(sys.argv[1] + "/a.npy", rng.standard_normal((40000, 16)).astype(np.float32))
np.save(sys.argv[1] + "/b.npy", rng.standard_normal((9000, 8)).astype(np.float32))
PYEOF
$MPIRUN -n 3 "$US_BIN" import --quiet --out "$T/s3" --shards 3 --block-bits 4 --seed 21 \
  --dtype int8 --table a="$T/a.npy" --table b="$T/b.npy" --synthetic z=1000000x8 >/dev/null

# check_moved OUT FROM TO: moved fraction within 10% of 1 - min/max
check_moved() {
  local out=$1 from=$2 to=$3
  local frac; frac=$(grep -o 'blocks ([0-9.]*)' <<<"$out" | tr -d '()' | awk '{print $2}')
  awk -v f="$frac" -v a="$from" -v b="$to" 'BEGIN {
    lo = a < b ? a : b; hi = a < b ? b : a; ideal = 1 - lo / hi;
    if (f < 0.9 * ideal || f > 1.1 * ideal) { printf "moved %.4f, ideal %.4f\n", f, ideal; exit 1 }
    printf "moved %.4f, ideal %.4f\n", f, ideal }' || fail "moved fraction $from -> $to"
}
out=$("$US_BIN" reshard --shards 4 "$T/s3" "$T/s4"); echo "$out"
grep -q "moved [0-9]* of 3063 blocks" <<<"$out" || fail "block count"
grep -q "proof: 49000 rows compared, 0 differ" <<<"$out" || fail "proof 3 -> 4"
check_moved "$out" 3 4
out=$("$US_BIN" reshard --shards 2 "$T/s4" "$T/s2"); echo "$out"; check_moved "$out" 4 2
out=$("$US_BIN" reshard --shards 1 "$T/s2" "$T/s1"); echo "$out"; check_moved "$out" 2 1
grep -q "proof: 49000 rows compared, 0 differ" <<<"$out" || fail "proof 2 -> 1"

for s in 4 2 1; do
  "$US_BIN" inspect "$T/s$s" | grep "format 2, $s shards, 3 tables" >/dev/null || fail "inspect s$s"
  $PY tests/ref/store_read.py "$T/s$s" 0 $s 21 4 int8 "$T/a.npy"
  $PY tests/ref/store_read.py "$T/s$s" 1 $s 21 4 int8 "$T/b.npy"
done
$MPIRUN -n 2 "$US_BIN" verify "$T/s4" --against a="$T/a.npy" --against b="$T/b.npy" \
  | grep ": ok: .*49000 rows compared" >/dev/null || fail "verify s4"
# the destination must be new; the source is untouched
"$US_BIN" reshard --shards 5 "$T/s3" "$T/s4" >/dev/null 2>"$T/err" && fail "reshard overwrote a store"
grep -q "already exists" "$T/err" || fail "overwrite message"
"$US_BIN" verify "$T/s3" | grep ": ok:" >/dev/null || fail "source changed"
rc=0; "$US_BIN" reshard --shards 0 "$T/s3" "$T/x" >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--shards 0 should be a usage error (exit $rc)"
echo "store_reshard ok"
