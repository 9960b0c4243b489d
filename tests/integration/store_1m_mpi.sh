#!/usr/bin/env bash
# The issue's acceptance test: a 1M x 256 f32 table (1 GiB .npy made by numpy)
# imported with 4 ranks, then every row read back by 4 ranks through the
# store (mmap) and compared bit-exactly with the file (verify --against).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
free_kb=$(df -Pk /tmp | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt $((3 * 1024 * 1024)) ]; then
  echo "skip: need 3 GiB free in /tmp, have $((free_kb / 1024)) MiB"; exit 77
fi
T=$(mktemp -d /tmp/us_1m.XXXXXX)
trap 'rm -rf "$T"' EXIT
start=$(date +%s)
# rows are distinct and non-trivial: row i holds i + col/256 + noise
/usr/bin/python3 - "$T/v.npy" <<'PYEOF'
import sys
import numpy as np
rows, dim = 1_000_000, 256
a = np.lib.format.open_memmap(sys.argv[1], mode="w+", dtype=np.float32, shape=(rows, dim))
rng = np.random.default_rng(11)
step = 125_000
for r in range(0, rows, step):
    a[r:r + step] = (np.arange(r, r + step, dtype=np.float32)[:, None]
                     + np.arange(dim, dtype=np.float32)[None, :] / 256
                     + rng.standard_normal((step, dim), dtype=np.float32))
a.flush()
PYEOF
[ "$(stat -c %s "$T/v.npy")" -eq $((1000000 * 256 * 4 + 128)) ] || fail "npy size"
echo "generated in $(( $(date +%s) - start )) s"

$MPIRUN -n 4 "$US_BIN" import --out "$T/store" --table values="$T/v.npy" --quiet | tee "$T/imp"
grep -q "import: 1 tables, 4 shards, 4 ranks: 245 blocks, 1024.0 MB read" "$T/imp" || fail "import"
out=$($MPIRUN -n 4 "$US_BIN" verify "$T/store" --against values="$T/v.npy")
echo "$out"
grep -q ": ok: 4 files, 245 blocks, 1024.0 MB checked, 0 bad blocks, 0 failures, 1000000 rows compared, 4 ranks" <<<"$out" \
  || fail "read back"
# the shard files together hold exactly the table's blocks (4 KiB slots) and one
# 4 KiB identity header each
total=$(cat "$T"/store/table-0.shard-*.bin | wc -c)
[ "$total" -eq $((245 * 4096 * 1024 + 4 * 4096)) ] || fail "shard bytes $total"
echo "store_1m_mpi ok in $(( $(date +%s) - start )) s"
