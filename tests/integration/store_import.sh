#!/usr/bin/env bash
# import under mpirun (3 ranks) from .npy (f32, f16, bf16 as |V2) and a
# multi-tensor safetensors file, into every stored dtype; each store is
# checked by an independent numpy reader of the shard files
# (tests/ref/store_read.py) and by `verify --against` (bit-exact rows).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d /tmp/us_import.XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
REF=tests/ref/store_read.py

$PY - "$T" <<'PYEOF'
import sys, json, struct
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(5)
a = (rng.standard_normal((5000, 48)) * 3).astype(np.float32)
a[7] = 0.0                                   # an all-zero row: int8 scale 0
np.save(d + "/a.npy", a)
np.save(d + "/h.npy", rng.standard_normal((1000, 16)).astype(np.float16))
bf = (rng.standard_normal((777, 24)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
np.save(d + "/bf.npy", bf.view("V2"))
# safetensors with two tensors and metadata, written by hand (the format is tiny)
w1 = rng.standard_normal((300, 8)).astype(np.float32)
w2 = rng.standard_normal((64, 4)).astype(np.float16)
hdr = {"__metadata__": {"format": "pt"},
       "layer0.values": {"dtype": "F32", "shape": [300, 8], "data_offsets": [0, w1.nbytes]},
       "layer1.values": {"dtype": "F16", "shape": [64, 4],
                         "data_offsets": [w1.nbytes, w1.nbytes + w2.nbytes]}}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(d + "/m.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + w1.tobytes() + w2.tobytes())
np.save(d + "/w1.npy", w1)
np.save(d + "/w2.npy", w2)
PYEOF

# keep dtypes: four tables in one store, 3 ranks, 5 shards
$MPIRUN -n 3 "$US_BIN" import --out "$T/keep" --shards 5 --block-bits 7 --seed 9 \
  --table a="$T/a.npy" --table h="$T/h.npy" --table bf="$T/bf.npy" \
  --table l0="$T/m.safetensors#layer0.values" --table l1="$T/m.safetensors#layer1.values" \
  --synthetic big=100000000000x256 >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; fail "import keep"; }
grep -q "import: 6 tables, 5 shards, 3 ranks" "$T/out" || fail "import summary: $(cat "$T/out")"
grep -q "import: rank 0: .*(100%)" "$T/err" || fail "no progress line"
$PY $REF "$T/keep" 0 5 9 7 f32 "$T/a.npy"
$PY $REF "$T/keep" 1 5 9 7 f16 "$T/h.npy"
$PY $REF "$T/keep" 2 5 9 7 bf16 "$T/bf.npy"
$PY $REF "$T/keep" 3 5 9 7 f32 "$T/w1.npy"
$PY $REF "$T/keep" 4 5 9 7 f16 "$T/w2.npy"
out=$($MPIRUN -n 2 "$US_BIN" verify "$T/keep" --against a="$T/a.npy" --against bf="$T/bf.npy" \
      --against l1="$T/m.safetensors#layer1.values")
echo "$out"
grep -q "verify $T/keep: ok: .* 0 bad blocks, 0 failures, 5841 rows compared" <<<"$out" || fail "verify keep"
"$US_BIN" inspect "$T/keep" | tee "$T/inspect"
grep -q "table 5 'big': 100000000000 rows x 256 f32, 781250000 blocks of 128 rows (synthetic" "$T/inspect" || fail inspect
[ "$(grep -c '^  shard ' "$T/inspect")" -eq 5 ] || fail "inspect shards"

# conversions: f32 -> bf16, f16, int8; f16 -> bf16; bf16 -> f32
for dt in bf16 f16 int8; do
  $MPIRUN -n 3 "$US_BIN" import --quiet --out "$T/$dt" --dtype $dt --shards 4 --block-bits 6 \
    --table a="$T/a.npy" --table h="$T/h.npy" >/dev/null
  $PY $REF "$T/$dt" 0 4 0 6 $dt "$T/a.npy"
  $PY $REF "$T/$dt" 1 4 0 6 $dt "$T/h.npy"
  "$US_BIN" verify "$T/$dt" --against a="$T/a.npy" --against h="$T/h.npy" | grep -q ": ok: .*6000 rows compared" \
    || fail "verify $dt"
done
$MPIRUN -n 2 "$US_BIN" import --quiet --out "$T/bf2f" --dtype f32 --shards 2 --table bf="$T/bf.npy" >/dev/null
$PY $REF "$T/bf2f" 0 2 0 12 f32 "$T/bf.npy"
# one rank, one shard: rank 0 holds every block
"$US_BIN" import --quiet --out "$T/one" --table a="$T/a.npy" >/dev/null 2>&1
$PY $REF "$T/one" 0 1 0 12 f32 "$T/a.npy"
"$US_BIN" inspect "$T/one" | grep "format 2, 1 shards" >/dev/null || fail "one shard"
# more ranks than shards: rank 2 builds and checks nothing, and says so by its silence
$MPIRUN -n 3 "$US_BIN" import --quiet --out "$T/few" --shards 2 --table a="$T/a.npy" >"$T/out" 2>&1 \
  || { cat "$T/out"; fail "import with ranks > shards"; }
grep -q "import: 1 tables, 2 shards, 3 ranks" "$T/out" || fail "ranks > shards summary"
$PY $REF "$T/few" 0 2 0 12 f32 "$T/a.npy"
out=$($MPIRUN -n 3 "$US_BIN" verify "$T/few" --against a="$T/a.npy")
grep -q ": ok: 2 files, 2 blocks, .* 5000 rows compared, 3 ranks" <<<"$out" || { echo "$out"; fail "verify ranks > shards"; }
# inspect --json is valid JSON, one object per line
"$US_BIN" inspect "$T/keep" --json | $PY -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert [r["table"] for r in rows[:-1]] == ["a", "h", "bf", "l0", "l1", "big"], rows
assert rows[-1]["shards"] == 5 and rows[-1]["blocks"] == 59, rows[-1]
assert rows[0]["dtype"] == "f32" and rows[5]["synthetic"] is True
' || fail "inspect --json"
echo "store_import ok"
