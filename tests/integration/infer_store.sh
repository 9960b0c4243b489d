#!/usr/bin/env bash
# Memory tables served from a store (init-model --store, infer --store):
# an f32 store over 3 shards gives byte-identical output to the in-process
# .npy tables; bf16 and int8 stores run; a store of another model's shape and
# a missing store are refused naming the table / directory; init-model never
# overwrites an existing store.
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 21 --store "$dir/st" --shards 3 \
  >/dev/null || fail "init-model --store"
for i in 1 2 3 4 5 6; do
  printf '{"id":"q%d","prompt":"store check %d: a prompt that spans more than one segment","max_tokens":16}\n' $i $i
done > "$dir/in.jsonl"
run() { "$US_BIN" infer --model "$dir/m" --input "$dir/in.jsonl" --quiet --batch 3 "$@" >/dev/null; }
run --output "$dir/npy.jsonl" || fail "npy run"
run --output "$dir/store.jsonl" --store "$dir/st" || fail "store run"
cmp "$dir/npy.jsonl" "$dir/store.jsonl" || fail "f32 store output differs from the npy tables"
ls "$dir/st" | grep -q 'table-0.shard-2.bin' || fail "store has no shard 2 file: $(ls "$dir/st")"
echo "ok  f32 store over 3 shards == in-process tables"
# the model's .npy tables are importable as they are (ultrashard import)
"$US_BIN" import --out "$dir/imported" --table table_0="$dir/m/values/table_0.npy" --shards 2 \
  --block-bits 4 >/dev/null 2>&1 || fail "import of values/table_0.npy"
run --output "$dir/imported.jsonl" --store "$dir/imported" || fail "imported store run"
cmp "$dir/npy.jsonl" "$dir/imported.jsonl" || fail "imported store output differs"
echo "ok  ultrashard import of values/table_0.npy serves the same output"
for dt in bf16 int8; do
  "$US_BIN" init-model --preset tiny --out "$dir/m$dt" --seed 21 --store "$dir/st$dt" \
    --store-dtype $dt >/dev/null || fail "init-model $dt"
  run --output "$dir/$dt.jsonl" --store "$dir/st$dt" || fail "$dt store run"
  [ "$(wc -l < "$dir/$dt.jsonl")" -eq 6 ] || fail "$dt store output"
  echo "ok  $dt store runs"
done
expect() {
  local re=$1; shift
  if run "$@" 2>"$dir/err"; then fail "accepted: $*"; fi
  grep -Eq "$re" "$dir/err" || fail "message '$(cat "$dir/err")' does not match /$re/"
  echo "ok  $(head -c 180 "$dir/err")"
}
"$US_BIN" init-model --preset small --out "$dir/small" --store "$dir/stsmall" >/dev/null || fail "small"
expect 'memory table 0 \(layer 1\): store has 16384 rows x 128, model wants 64 x 32' \
  --output "$dir/x1" --store "$dir/stsmall"
expect "$dir/nostore" --output "$dir/x2" --store "$dir/nostore"
"$US_BIN" init-model --preset small --out "$dir/small2" --store "$dir/st" 2>"$dir/err" >/dev/null \
  && fail "init-model overwrote an existing store"
grep -q "exists" "$dir/err" || fail "refusal message: $(cat "$dir/err")"
cmp "$dir/npy.jsonl" "$dir/store.jsonl" >/dev/null || fail "outputs changed"
echo "infer store ok"
