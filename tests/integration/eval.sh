#!/usr/bin/env bash
# `ultrashard eval` (coordinator/infer/eval.h): bits per byte of a tiny model
# on a small text equal the numpy reference's (tests/ref/model.py bpb, 1e-5
# relative) whatever the chunk size (--batch-tokens 7 crosses the 16-token
# segments, 256 takes the text in one step), for the tiny preset and a model
# with the variants combined (RoPE, 2 cores, l2 query norm, output gate);
# the same numbers from `mpirun -n 3` with a 2-shard store; a text file
# larger than any buffer streams (bytes counted = file size); missing file,
# empty file and a bad model directory fail with a clear message.
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 with numpy not available"; exit 77; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 7 --store "$dir/s2" --shards 2 \
  --store-dtype f32 >/dev/null
/usr/bin/python3 - "$dir/m/config.json" "$dir/var.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["rope_theta"] = 1000.0
c["memory"].update(tucker_cores=2, query_norm="l2", output_gate=True)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$US_BIN" init-model --config "$dir/var.json" --out "$dir/var" --seed 3 >/dev/null
printf 'The quick brown fox jumps over the lazy dog. UltraShard scores bytes:\n%s\n' \
  "0123456789 {\"json\": [1, 2]} \xc3\xa9\xe2\x82\xac end" >"$dir/text.txt"
n=$(stat -c %s "$dir/text.txt")
field() { /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }
close() {   # $1 $2 numbers, $3 relative tolerance, $4 what
  /usr/bin/python3 -c "import sys; a, b, t = map(float, sys.argv[1:4]);
sys.exit(0 if abs(a - b) <= t * abs(b) else 1)" "$1" "$2" "$3" \
    || { echo "FAIL: $4: $1 vs $2"; exit 1; }
}
for model in m var; do
  ref=$(/usr/bin/python3 tests/ref/model.py bpb "$dir/$model" "$dir/text.txt")
  want=$(field bits_per_byte <<<"$ref")
  for bt in 7 256; do
    out=$("$US_BIN" eval --model "$dir/$model" --text "$dir/text.txt" --json --batch-tokens $bt)
    got=$(field bits_per_byte <<<"$out")
    [ "$(field bytes <<<"$out")" = "$n" ] || { echo "FAIL: bytes != $n: $out"; exit 1; }
    close "$got" "$want" 1e-5 "$model, --batch-tokens $bt vs numpy"
    close "$(field nll_nats <<<"$out")" "$(field nll_nats <<<"$ref")" 1e-5 "$model nll_nats"
    echo "$model --batch-tokens $bt: $got bits/byte (numpy $want) over $n bytes"
  done
done
# one process with the store, then 3 ranks (2 shards) serving it: same numbers
one=$("$US_BIN" eval --model "$dir/m" --store "$dir/s2" --text "$dir/text.txt" --json \
      --batch-tokens 7 | field bits_per_byte)
dist=$($MPIRUN -n 3 "$US_BIN" eval --model "$dir/m" --store "$dir/s2" --text "$dir/text.txt" \
       --json --batch-tokens 7 --quiet | field bits_per_byte)
close "$dist" "$one" 1e-6 "mpirun -n 3 vs one process"
echo "one process $one, mpirun -n 3 $dist bits/byte"
# a longer file (64 KiB, > 200 chunks of 256): streamed, every byte counted
head -c 65536 /dev/urandom >"$dir/long.bin"
out=$("$US_BIN" eval --model "$dir/m" --text "$dir/long.bin" --json --quiet)
[ "$(field bytes <<<"$out")" = 65536 ] || { echo "FAIL: long file: $out"; exit 1; }
# random bytes under a random model: about log2(259) ~ 8 bits, surely > 6
close "$(field bits_per_byte <<<"$out")" 8.0 0.25 "random bytes"
echo "64 KiB random bytes: $(field bits_per_byte <<<"$out") bits/byte"
# errors: clear message, non-zero exit
expect_fail() {   # $1 = message part, rest = command
  local want=$1; shift
  set +e; msg=$("$@" 2>&1); rc=$?; set -e
  [ $rc -ne 0 ] || { echo "FAIL: '$*' succeeded"; exit 1; }
  grep -q -- "$want" <<<"$msg" || { echo "FAIL: '$*' said: $msg"; exit 1; }
}
: >"$dir/empty.txt"
expect_fail "empty.txt: empty file" "$US_BIN" eval --model "$dir/m" --text "$dir/empty.txt"
expect_fail "nothing.txt: cannot open" "$US_BIN" eval --model "$dir/m" --text "$dir/nothing.txt"
expect_fail "nomodel/config.json" "$US_BIN" eval --model "$dir/nomodel" --text "$dir/text.txt"
expect_fail "--model and --text are required" "$US_BIN" eval --text "$dir/text.txt"
echo "eval ok"
