#!/usr/bin/env bash
# Sessions on their owner shards (coordinator/model/memory_dist.h): under mpirun
# with 4 ranks, a session fed over three jobs generates exactly what one job
# with the concatenated prompt generates, and what the same three jobs give
# in one process; six sessions over two jobs with sampling match the
# single-process run; a session saved by a 4-rank job is continued by a
# single-process job (same files, same format).
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 9 --store "$dir/st" --shards 3 >/dev/null
one()  { "$US_BIN" infer --model "$dir/m" --store "$dir/st" --quiet "$@" >/dev/null; }
four() { $MPIRUN -n 4 "$US_BIN" infer --model "$dir/m" --store "$dir/st" --quiet "$@" >/dev/null; }
tokens() { grep -o '"tokens":\[[0-9,]*\]' "$1"; }

. "$(dirname "$0")/lib/three_part_session.sh"
write_three_part_session "$dir"
for k in 1 2 3; do
  four --input "$dir/j$k.jsonl" --output "$dir/d$k.jsonl" --sessions "$dir/sd" || fail "4-rank job $k"
  one --input "$dir/j$k.jsonl" --output "$dir/l$k.jsonl" --sessions "$dir/sl" || fail "1-rank job $k"
done
one --input "$dir/one.jsonl" --output "$dir/one.out" || fail "one-job run"
[ -n "$(tokens "$dir/one.out")" ] && [ "$(tokens "$dir/d3.jsonl")" = "$(tokens "$dir/one.out")" ] \
  || fail "4-rank session over 3 jobs differs from one prompt"
cmp "$dir/d3.jsonl" "$dir/l3.jsonl" || fail "4-rank and 1-rank session jobs differ"
ls "$dir/sd/sessions/s1/" | grep -q '^gen-0*3\.pb$' || fail "generation 3 missing: $(ls "$dir/sd/sessions/s1/")"
echo "ok  3-job session on shards == one prompt == 1-process sessions"

for i in 1 2 3 4 5 6; do
  printf '{"id":"k%d","session":"u%d","prompt":"session %d begins with a fairly long prompt text","max_tokens":14}\n' $i $i $i
done > "$dir/k.jsonl"
for i in 1 2 3 4 5 6; do
  printf '{"id":"f%d","session":"u%d","prompt":" and continues","max_tokens":10}\n' $i $i
done > "$dir/f.jsonl"
args=(--batch 2 --batch-tokens 16 --temperature 0.7 --seed 4)
four "${args[@]}" --input "$dir/k.jsonl" --output "$dir/kd.jsonl" --sessions "$dir/sd" || fail "4-rank k"
one "${args[@]}" --input "$dir/k.jsonl" --output "$dir/kl.jsonl" --sessions "$dir/sl" || fail "1-rank k"
cmp "$dir/kd.jsonl" "$dir/kl.jsonl" || fail "six sessions: 4 ranks differ from 1 process"
# continue the shard-saved sessions in one process, and vice versa
one "${args[@]}" --input "$dir/f.jsonl" --output "$dir/fd.jsonl" --sessions "$dir/sd" || fail "follow 1"
four "${args[@]}" --input "$dir/f.jsonl" --output "$dir/fl.jsonl" --sessions "$dir/sl" || fail "follow 4"
cmp "$dir/fd.jsonl" "$dir/fl.jsonl" || fail "follow-up jobs differ across the two session stores"
echo "sessions_dist ok"
