#!/usr/bin/env bash
# Damaged or mismatched stores are reported naming table, block and file
# with exit 1; an existing store is never overwritten; a full disk (file size
# limit) is a clean error that leaves no store; shard count mismatch.
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d /tmp/us_damage.XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
$PY - "$T" <<'PYEOF'
import sys
import numpy as np
d = sys.argv[1]
np.save(d + "/good.npy", np.random.default_rng(3).standard_normal((3000, 32)).astype(np.float32))
np.save(d + "/big.npy", np.ones((100000, 64), np.float32))   # 25.6 MB
PYEOF
# an existing store is never overwritten, byte for byte
"$US_BIN" import --quiet --out "$T/s" --shards 3 --block-bits 8 --table v="$T/good.npy" >/dev/null 2>&1 || fail "good import"
sum_before=$(cd "$T/s" && sha256sum * | sha256sum)
"$US_BIN" import --quiet --out "$T/s" --table v="$T/good.npy" >"$T/out" 2>"$T/err" && fail "overwrote a store"
grep -q "already exists" "$T/err" || fail "overwrite message"
[ "$(cd "$T/s" && sha256sum * | sha256sum)" = "$sum_before" ] || fail "existing store changed"

# damaged stores: each copy is reported naming table, block and file; exit 1
damage() { rm -rf "$T/d"; cp -r "$T/s" "$T/d"; }
damage; printf '\x55' | dd of="$T/d/table-0.shard-1.bin" bs=1 seek=5000 conv=notrunc status=none
"$US_BIN" verify "$T/d" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "verify of a corrupt block"
grep -Eq "table 'v' block [0-9]+ in file '.*table-0.shard-1.bin': checksum" "$T/err" || { cat "$T/err"; fail "corrupt block message"; }
grep -q "1 bad blocks" "$T/out" || fail "bad block count"
damage; truncate -s 100000 "$T/d/table-0.shard-2.bin"
"$US_BIN" verify "$T/d" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "verify of a truncated file"
grep -Eq "table 'v' block [0-9]+ in file '.*table-0.shard-2.bin': truncated" "$T/err" || { cat "$T/err"; fail "truncation message"; }
damage; rm "$T/d/table-0.shard-0.bin"
$MPIRUN -n 2 "$US_BIN" verify "$T/d" >"$T/out" 2>"$T/err"; [ $? -ne 0 ] || fail "verify with a missing file"
grep -q "table-0.shard-0.bin" "$T/err" || fail "missing file message"
damage; printf '\x01' | dd of="$T/d/manifest.pb" bs=1 seek=20 conv=notrunc status=none
"$US_BIN" inspect "$T/d" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "inspect of a corrupt manifest"
grep -q "manifest.pb': checksum mismatch" "$T/err" || fail "manifest message"
damage; truncate -s 30 "$T/d/manifest.pb"
"$US_BIN" verify "$T/d" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "verify of a truncated manifest"
grep -q "manifest.pb" "$T/err" || fail "truncated manifest message"
"$US_BIN" inspect "$T/nowhere" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "inspect of a missing store"
grep -q "not a store directory" "$T/err" || fail "missing store message"
# a corrupt source is never resharded; the destination does not appear
damage; printf '\x55' | dd of="$T/d/table-0.shard-1.bin" bs=1 seek=5000 conv=notrunc status=none
"$US_BIN" reshard --shards 4 "$T/d" "$T/r" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "reshard of a corrupt store"
grep -q "checksum" "$T/err" || fail "reshard corrupt message"
[ ! -e "$T/r" ] && [ ! -e "$T/r.partial" ] || fail "reshard left a store"
# shard count mismatch, as a serving job sees it
$MPIRUN -n 2 "$US_BIN" verify "$T/s" --expect-shards 4 >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "expect-shards"
grep -q "has 3 shards, expected 4 (shard count mismatch)" "$T/err" || { cat "$T/err"; fail "mismatch message"; }
[ "$(grep -c "shard count mismatch" "$T/err")" -eq 1 ] || fail "mismatch reported once"
"$US_BIN" verify "$T/s" --expect-shards 3 >/dev/null || fail "expect-shards 3"
# the serving side's check (open with expect_shards) is
# unit-tested in test_store; here a store whose files disagree with its
# manifest's shard count (files of a 3-shard store, manifest of a 4-shard one)
"$US_BIN" import --quiet --out "$T/s4" --shards 4 --block-bits 8 --table v="$T/good.npy" >/dev/null 2>&1
damage; cp "$T/s4/manifest.pb" "$T/d/manifest.pb"
"$US_BIN" verify "$T/d" >"$T/out" 2>"$T/err"; [ $? -eq 1 ] || fail "verify with a shard count mismatch"
grep -Eq "table-0.shard-3.bin|truncated|bytes, manifest says" "$T/err" || { cat "$T/err"; fail "mismatch message"; }

# a full disk: RLIMIT_FSIZE of 8 MiB (MPI start-up itself needs ~4 MiB of
# shared-memory files), so writing the 25.6 MB shard file fails with EFBIG
if (ulimit -f 8192 2>/dev/null); then
  (ulimit -f 8192; exec "$US_BIN" import --quiet --out "$T/new" --table v="$T/big.npy") >"$T/out" 2>"$T/err"
  rc=$?
  [ $rc -eq 1 ] || { cat "$T/err"; fail "disk full: exit $rc, want 1"; }
  grep -q "file size limit reached" "$T/err" || { cat "$T/err"; fail "disk full message"; }
  [ ! -e "$T/new" ] && [ ! -e "$T/new.partial" ] || fail "disk full left a store"
  echo "ok   disk full: $(grep -m1 error "$T/err")"
else
  echo "note: ulimit -f unavailable; disk-full case not run"
fi
echo "store_damage ok"
