#!/usr/bin/env bash
# The progress ETA counts prompt work: a single 64 KiB prompt (one sequence,
# so no sequence finishes before the end) shows a non-zero, decreasing ETA
# while it prefills, and the prompt tokens/s. --step-delay-ms 100 with 2048
# tokens per step (33 steps) keeps the run >= 3.3 s, so progress lines
# (one a second) appear however fast the machine is. Before the ETA counted
# tokens, it stayed "ETA 0s" until the only sequence was done.
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" >/dev/null
printf '{"id":"long","prompt":"%s","max_tokens":4}\n' \
  "$(head -c 65536 /dev/zero | tr '\0' 'a')" > "$dir/p.jsonl"
"$US_BIN" infer --model "$dir/m" --input "$dir/p.jsonl" --output "$dir/o.jsonl" --batch 1 \
  --batch-tokens 2048 --step-delay-ms 100 > "$dir/summary.json" 2> "$dir/progress"
cat "$dir/progress"
grep -q '"prompt_tokens":65537,' "$dir/o.jsonl" || fail "prompt tokens"
grep -q '^infer: 1/1 sequences done (0 resumed), .* elapsed [0-9]*s$' "$dir/progress" \
  || fail "no final line"
etas=$(grep -o 'ETA [0-9]*s$' "$dir/progress" | tr -dc '0-9\n')
[ "$(wc -l <<<"$etas")" -ge 2 ] || fail "fewer than 2 progress lines before the end"
first=$(head -1 <<<"$etas"); last=$(tail -1 <<<"$etas")
elapsed=$(grep -o 'elapsed [0-9]*s$' "$dir/progress" | tr -dc '0-9')
[ "$first" -ge 1 ] || fail "ETA 0 while the prompt is still prefilling"
[ "$last" -lt "$first" ] || fail "ETA did not decrease ($first s, then $last s)"
[ "$first" -le $((2 * elapsed + 1)) ] || fail "first ETA $first s, whole run $elapsed s"
grep -q ' [1-9][0-9]* prompt tokens/s' "$dir/progress" || fail "no prompt tokens/s"
echo "infer progress ok: ETA $first s .. $last s, elapsed $elapsed s"
