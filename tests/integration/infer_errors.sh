#!/usr/bin/env bash
# Bad inputs to `ultrashard infer` and the model loader: exit 1 with a message
# naming the line or file; a finished output (and its journal) stays intact.
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 5 >/dev/null || fail "init-model"
printf '{"id":"a","prompt":"hello","max_tokens":4}\n{"id":"b","prompt":"world","max_tokens":4}\n' \
  > "$dir/good.jsonl"
"$US_BIN" infer --model "$dir/m" --input "$dir/good.jsonl" --output "$dir/out.jsonl" --quiet \
  >/dev/null || fail "good run"
cp "$dir/out.jsonl" "$dir/out.keep"; cp "$dir/out.jsonl.journal" "$dir/journal.keep"

# expect NAME INPUT_FILE REGEX [extra infer args...]: exit 1, stderr matches, output kept
expect() {
  local name=$1 input=$2 re=$3; shift 3
  "$US_BIN" infer --model "$dir/m" --input "$input" --output "$dir/out.jsonl" --quiet "$@" \
    >/dev/null 2>"$dir/err"
  local rc=$?
  [ $rc -eq 1 ] || fail "$name: exit $rc, want 1 ($(cat "$dir/err"))"
  grep -Eq "$re" "$dir/err" || fail "$name: message '$(cat "$dir/err")' does not match /$re/"
  cmp -s "$dir/out.jsonl" "$dir/out.keep" || fail "$name: finished output changed"
  cmp -s "$dir/out.jsonl.journal" "$dir/journal.keep" || fail "$name: journal changed"
  echo "ok  $name: $(head -c 160 "$dir/err")"
}
printf '{"id":"a","prompt":"x"}\n{"id":"b","prompt":"y"\n' > "$dir/t1.jsonl"
expect "invalid JSON line" "$dir/t1.jsonl" 't1\.jsonl:2: invalid JSON'
printf '{"id":"a","prompt":"x"}\n\n{"id":"c","prompt":"a\xff\xfeb"}\n' > "$dir/t2.jsonl"
expect "invalid UTF-8 bytes" "$dir/t2.jsonl" 't2\.jsonl:3: invalid UTF-8 at column 22'
printf '{"id":"a","prompt":"x\\ud800y"}\n' > "$dir/t3.jsonl"
expect "unpaired surrogate escape" "$dir/t3.jsonl" 't3\.jsonl:1: invalid JSON'
printf '{"id":"a","prompt":"0123456789abc"}\n' > "$dir/t4.jsonl"
expect "prompt over the limit" "$dir/t4.jsonl" 't4\.jsonl:1: prompt of 13 bytes exceeds the limit of 12' \
  --max-prompt-bytes 12
printf '{"id":"a","prompt":"x"}\n{"id":"a","prompt":"y"}\n' > "$dir/t5.jsonl"
expect "duplicate id" "$dir/t5.jsonl" 't5\.jsonl:2: duplicate id "a" \(first on line 1\)'
printf '{"id":"a","prompt":"x","max_tokens":-1}\n' > "$dir/t6.jsonl"
expect "bad max_tokens" "$dir/t6.jsonl" 't6\.jsonl:1: "max_tokens" must be an integer'
printf '{"id":"a","prompt":"x\\u0000y"}\n' > "$dir/t7.jsonl"
expect "escaped NUL" "$dir/t7.jsonl" 't7\.jsonl:1: NUL character'
printf '{"id":"a","prompt":"x"}\n{"id":"n","prompt":"nul\0inside"}\n' > "$dir/t9.jsonl"
expect "raw NUL byte" "$dir/t9.jsonl" 't9\.jsonl:2: raw NUL byte \(0x00\) at column 24'
printf '{"id":"a","prompt":"tab\there"}\n' > "$dir/t10.jsonl"
expect "raw control byte" "$dir/t10.jsonl" 't10\.jsonl:1: raw control byte 0x09 at column 24'
printf '{"id":"a","prompt":"other"}\n' > "$dir/t8.jsonl"
expect "different input, same output" "$dir/t8.jsonl" 'out\.jsonl\.journal: journal was written by a different command'
expect "missing input" "$dir/nope.jsonl" 'nope\.jsonl: cannot open'

# model files: copy the model, break one file, expect the file named
broken() {
  rm -rf "$dir/bm"; cp -r "$dir/m" "$dir/bm"
}
expect_model() {
  local name=$1 re=$2
  "$US_BIN" infer --model "$dir/bm" --input "$dir/good.jsonl" --output "$dir/out.jsonl" \
    --quiet >/dev/null 2>"$dir/err"
  local rc=$?
  [ $rc -eq 1 ] || fail "$name: exit $rc, want 1"
  grep -Eq "$re" "$dir/err" || fail "$name: message '$(cat "$dir/err")' does not match /$re/"
  cmp -s "$dir/out.jsonl" "$dir/out.keep" || fail "$name: finished output changed"
  echo "ok  $name: $(head -c 200 "$dir/err")"
}
broken; rm "$dir/bm/config.json"
expect_model "missing config" 'bm/config\.json: cannot open'
broken; echo '{"format": "ultrashard-model", "version": 1, "d_model": ' > "$dir/bm/config.json"
expect_model "malformed config" 'bm/config\.json: not a JSON object'
broken; sed -i 's/"d_model":\t64/"d_model":\t48/' "$dir/bm/config.json"
expect_model "config/weights shape mismatch" "weights\.safetensors: tensor 'tok_emb' is f32 \[259, 64\], config\.json wants f32 \[259, 48\]"
broken; truncate -s 100000 "$dir/bm/weights.safetensors"
expect_model "truncated weights" 'bm/weights\.safetensors'
broken; rm "$dir/bm/weights.safetensors"
expect_model "missing weights" 'bm/weights\.safetensors.*(cannot open|No such)'
broken; "$US_BIN" init-model --preset small --out "$dir/small" >/dev/null || fail "small preset"
cp "$dir/small/values/table_0.npy" "$dir/bm/values/table_0.npy"
expect_model "value table shape mismatch" 'bm/values/table_0\.npy: table is f32 \[16384, 128\], the model \(memory layer 1\) wants f32 \[64, 32\]'
broken; rm "$dir/bm/values/table_0.npy"
expect_model "missing value table" 'bm/values/table_0\.npy'
echo "infer error handling ok"
