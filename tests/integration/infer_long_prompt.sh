#!/usr/bin/env bash
# Segment-wise Infini-attention keeps memory constant: a 32 KiB prompt (2048
# segments of 16) runs with the same sequence state as a 1 KiB one and a
# max RSS at most 6 MiB larger (the prompt text itself, as bytes and int32
# tokens, is ~0.2 MiB; a KV cache over the whole prompt would be 4 layers x
# 2 x 32769 x 64 floats = 64 MiB).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
[ -x /usr/bin/time ] || { echo "skip: /usr/bin/time not installed"; exit 77; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" >/dev/null
for kib in 1 32; do
  printf '{"id":"long","prompt":"%s","max_tokens":4}\n' \
    "$(head -c $((kib * 1024)) /dev/zero | tr '\0' 'a')" > "$dir/p$kib.jsonl"
  /usr/bin/time -f '%M' -o "$dir/rss$kib" "$US_BIN" infer --model "$dir/m" \
    --input "$dir/p$kib.jsonl" --output "$dir/o$kib.jsonl" --batch 1 --quiet > "$dir/s$kib.json"
  grep -q "\"prompt_tokens\":$((kib * 1024 + 1))," "$dir/o$kib.jsonl" || fail "prompt tokens ($kib KiB)"
done
s1=$(grep -o '"state_bytes":[0-9]*' "$dir/s1.json"); s32=$(grep -o '"state_bytes":[0-9]*' "$dir/s32.json")
[ "$s1" = "$s32" ] || fail "state grew: $s1 vs $s32"
r1=$(cat "$dir/rss1"); r32=$(cat "$dir/rss32")
echo "max RSS: 1 KiB prompt $r1 KiB, 32 KiB prompt $r32 KiB; $s32"
[ $((r32 - r1)) -le 6144 ] || fail "RSS grew by $((r32 - r1)) KiB"
echo "long prompt ok"
