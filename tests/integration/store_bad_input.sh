#!/usr/bin/env bash
# Bad input files give a clear error naming the thing, a non-zero exit and
# no partial store: wrong shapes/dtypes, truncated/corrupt npy/safetensors,
# missing files/tensors, NaN into int8, failures on one MPI rank.
# (Damaged stores, overwrites and a full disk: store_damage.sh.)
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d /tmp/us_bad.XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
$PY - "$T" <<'PYEOF'
import sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
np.save(d + "/good.npy", rng.standard_normal((3000, 32)).astype(np.float32))
np.save(d + "/vec.npy", np.zeros(100, np.float32))
np.save(d + "/cube.npy", np.zeros((4, 4, 4), np.float32))
np.save(d + "/f64.npy", np.zeros((10, 4), np.float64))
np.save(d + "/i8.npy", np.zeros((10, 4), np.int8))
np.save(d + "/fortran.npy", np.asfortranarray(np.zeros((10, 4), np.float32)))
np.save(d + "/big_endian.npy", np.zeros((10, 4), ">f4"))
nan = np.zeros((10, 4), np.float32); nan[3, 2] = np.nan
np.save(d + "/nan.npy", nan)
raw = open(d + "/good.npy", "rb").read()
open(d + "/trunc.npy", "wb").write(raw[:len(raw) - 100])
open(d + "/badmagic.npy", "wb").write(b"\x93NUMPX" + raw[6:])
open(d + "/garbage.safetensors", "wb").write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
open(d + "/trunc.safetensors", "wb").write(b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":")
PYEOF

# expect_fail NAME NEEDLE CMD...: exit 1, stderr names NEEDLE, no store left
expect_fail() {
  local name=$1 needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  [ $rc -eq 1 ] || { cat "$T/err"; fail "$name: exit $rc, want 1"; }
  grep -q -- "$needle" "$T/err" || { cat "$T/err"; fail "$name: error does not mention '$needle'"; }
  [ ! -e "$T/new" ] && [ ! -e "$T/new.partial" ] || fail "$name: left a store behind"
  echo "ok   $name: $(grep -m1 error "$T/err")"
}
imp() { "$US_BIN" import --quiet --out "$T/new" "$@"; }
expect_fail "1-D tensor"        "has 1 dimensions"     imp --table v="$T/vec.npy"
expect_fail "3-D tensor"        "has 3 dimensions"     imp --table v="$T/cube.npy"
expect_fail "f64 npy"           "'<f8' is not supported" imp --table v="$T/f64.npy"
expect_fail "int8 input"        "without row scales"   imp --table v="$T/i8.npy"
expect_fail "fortran order"     "fortran_order"        imp --table v="$T/fortran.npy"
expect_fail "big endian"        "'>f4'"                imp --table v="$T/big_endian.npy"
expect_fail "NaN to int8"       "row 3 column 2 is NaN" imp --dtype int8 --table v="$T/nan.npy"
expect_fail "truncated npy"     "trunc.npy': truncated" imp --table v="$T/trunc.npy"
expect_fail "bad npy magic"     "badmagic.npy"         imp --table v="$T/badmagic.npy"
expect_fail "corrupt safetensors" "garbage.safetensors': safetensors header is not a JSON" imp --table v="$T/garbage.safetensors"
expect_fail "truncated safetensors" "trunc.safetensors': truncated" imp --table v="$T/trunc.safetensors"
expect_fail "missing file"      "nope.npy"             imp --table v="$T/nope.npy"
expect_fail "missing tensor"    "no tensor named 'zz'" imp --table v="$T/good.npy#zz"
expect_fail "duplicate table"   "given twice"          imp --table v="$T/good.npy" --table v="$T/good.npy"
# the same errors under mpirun: every rank fails, exit non-zero
$MPIRUN -n 3 "$US_BIN" import --quiet --out "$T/new" --table v="$T/trunc.npy" >"$T/out" 2>"$T/err" \
  && fail "mpirun import of a truncated npy succeeded"
grep -q "trunc.npy': truncated" "$T/err" || fail "mpirun error message"
[ ! -e "$T/new" ] && [ ! -e "$T/new.partial" ] || fail "mpirun left a store"
# a failure on one rank only (the rank owning the NaN row's block): every
# rank stops, the others name the failing rank, exit non-zero, no store
$MPIRUN -n 3 "$US_BIN" import --quiet --dtype int8 --shards 3 --block-bits 2 --out "$T/new" \
  --table v="$T/nan.npy" >"$T/out" 2>"$T/err" && fail "mpirun import of a NaN into int8 succeeded"
# the failing rank's own line comes out first (us_comm_agree), from one rank only
[ "$(grep -c 'ultrashard: rank [0-2]: import: .*row 3 column 2 is NaN' "$T/err")" -eq 1 ] || { cat "$T/err"; fail "NaN reported by one rank"; }
# and the failing rank is named by the others (rank 0 prints it before the
# barrier; the other ranks' own lines may be cut off by the job's teardown)
[ "$(grep -c 'import aborted: rank [0-2] failed' "$T/err")" -ge 1 ] || { cat "$T/err"; fail "agreement"; }
[ ! -e "$T/new" ] && [ ! -e "$T/new.partial" ] || fail "mpirun NaN left a store"
"$US_BIN" import --dtype f64 --out "$T/new" --table v="$T/good.npy" >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --dtype exit"
echo "store_bad_input ok"
