#!/usr/bin/env bash
# kill -9 of `ultrashard infer` mid-run, twice, then a restart with the same
# command: the final output equals an uninterrupted run byte for byte (nothing
# lost, nothing duplicated), and the journal holds each sequence exactly once.
# Prompts include ones longer than a segment (L = 16) so prefill crosses
# segments. Sampling is on (temperature 0.8, top-p 0.9) to cover the RNG path.
# Also: the same job with batch 1 and one-token prefill steps gives the same
# output (a sequence's result does not depend on its batch neighbours).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 3 >/dev/null
n=24
for i in $(seq 1 $n); do
  printf '{"id": "s%02d", "prompt": "prompt %d: %s", "max_tokens": %d}\n' "$i" "$i" \
    "$(head -c $((i * 5)) /dev/zero | tr '\0' 'x')" $((8 + i % 5))
done > "$dir/in.jsonl"
args=(--model "$dir/m" --input "$dir/in.jsonl" --batch 4 --batch-tokens 32
      --temperature 0.8 --top-p 0.9 --seed 11 --quiet)
"$US_BIN" infer "${args[@]}" --output "$dir/ref.jsonl" >/dev/null
[ "$(wc -l < "$dir/ref.jsonl")" -eq $n ] || fail "reference run wrote $(wc -l < "$dir/ref.jsonl") lines"
# batch composition does not change a sequence's output: one sequence at a
# time, prompts fed one token per step, gives the same file
"$US_BIN" infer "${args[@]}" --batch 1 --batch-tokens 1 \
  --output "$dir/single.jsonl" >/dev/null
cmp "$dir/ref.jsonl" "$dir/single.jsonl" || fail "batch 1 / token-by-token prefill output differs"

records() { [ -f "$dir/out.jsonl.journal" ] && echo $(( $(wc -l < "$dir/out.jsonl.journal") - 1 )) || echo 0; }
for want in 5 13; do
  "$US_BIN" infer "${args[@]}" --output "$dir/out.jsonl" --step-delay-ms 15 >/dev/null &
  pid=$!
  for _ in $(seq 1 400); do
    [ "$(records)" -ge $want ] && break
    sleep 0.02
  done
  if [ $want -eq 5 ]; then   # a second job on the same output is refused while one runs
    if "$US_BIN" infer "${args[@]}" --output "$dir/out.jsonl" 2>"$dir/err2" >/dev/null; then
      fail "a concurrent job on the same output was accepted"
    fi
    grep -q "another infer job" "$dir/err2" || fail "concurrent job message: $(cat "$dir/err2")"
  fi
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  got=$(records)
  [ "$got" -ge $want ] && [ "$got" -lt $n ] || fail "kill landed outside the run ($got records)"
  echo "killed with $got of $n sequences journaled, $(wc -l < "$dir/out.jsonl") output lines"
done
"$US_BIN" infer "${args[@]}" --output "$dir/out.jsonl" > "$dir/summary.json"
grep -q '"resumed":1[3-9]\|"resumed":2[0-3]' "$dir/summary.json" || fail "restart resumed nothing: $(cat "$dir/summary.json")"
cmp "$dir/ref.jsonl" "$dir/out.jsonl" || fail "output after kill -9 + restart differs from the uninterrupted run"
dups=$(tail -n +2 "$dir/out.jsonl.journal" | grep -o '"id":"s[0-9]*"' | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "journal has $dups duplicated sequences"
[ "$(tail -n +2 "$dir/out.jsonl.journal" | wc -l)" -eq $n ] || fail "journal does not hold $n records"
# a completed job rerun is a no-op that keeps the output (progress on stderr)
loud=(); for a in "${args[@]}"; do [ "$a" = --quiet ] || loud+=("$a"); done
"$US_BIN" infer "${loud[@]}" --output "$dir/out.jsonl" > "$dir/summary2.json" 2>"$dir/progress"
grep -q "^infer: $n/$n sequences done ($n resumed)" "$dir/progress" \
  || fail "no final progress line: $(cat "$dir/progress")"
grep -q "\"resumed\":$n,\"finished\":0" "$dir/summary2.json" || fail "rerun recomputed: $(cat "$dir/summary2.json")"
cmp "$dir/ref.jsonl" "$dir/out.jsonl" || fail "rerun changed the output"
echo "infer resume ok: $(cat "$dir/summary.json")"
