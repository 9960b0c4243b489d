#!/usr/bin/env bash
# `infer --coordinators C` (coordinator/infer/infer_multi.h): C ranks decode
# every C-th prompt, the other ranks serve the store, rank 0 writes. The
# output equals the single-process output byte for byte: C=2 on 5 ranks (3
# shards) greedy, sampled, pull mode over fabric; C=3 on 5 ranks (2 shards);
# sessions saved and continued from both coordinators. kill -9 of the writer
# (rank 0) or of the other coordinator (rank 1) mid-run, then the same
# command completes the output exactly. Bad combinations are refused, and an
# output coordinator 0 cannot open stops every coordinator cleanly.
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s3" --shards 3 >/dev/null
"$US_BIN" init-model --preset tiny --out "$dir/m2" --seed 11 --store "$dir/s2" --shards 2 >/dev/null
for i in $(seq 1 13); do
  printf '{"id":"p%02d","prompt":"prompt number %d: the memory layer","max_tokens":%d}\n' \
    "$i" "$i" $((8 + i % 5))
done >"$dir/in.jsonl"
common=(--model "$dir/m" --store "$dir/s3" --input "$dir/in.jsonl" --batch 4 --quiet)
sampled=(--temperature 0.8 --top-p 0.9 --seed 5)

"$US_BIN" infer "${common[@]}" --output "$dir/ref.jsonl" >/dev/null
[ "$(wc -l <"$dir/ref.jsonl")" -eq 13 ] || fail "reference has $(wc -l <"$dir/ref.jsonl") lines"
$MPIRUN -n 5 "$US_BIN" infer "${common[@]}" --coordinators 2 --output "$dir/c2.jsonl" \
  >"$dir/c2.summary"
cmp "$dir/ref.jsonl" "$dir/c2.jsonl" || fail "C=2 greedy differs from 1 process"
grep -q '"sequences":13,"resumed":0,"finished":13,' "$dir/c2.summary" \
  || fail "C=2 summary: $(cat "$dir/c2.summary")"
want=$(/usr/bin/python3 -c 'import json,sys; print(sum(len(json.loads(l)["tokens"]) for l in open(sys.argv[1])))' "$dir/ref.jsonl")
grep -q "\"generated_tokens\":$want," "$dir/c2.summary" \
  || fail "C=2 summary does not count $want generated tokens: $(cat "$dir/c2.summary")"
echo "ok  C=2 on 5 ranks (3 shards), greedy: identical, summary counts both coordinators"

"$US_BIN" infer "${common[@]}" "${sampled[@]}" --output "$dir/ref_t.jsonl" >/dev/null
$MPIRUN -n 5 "$US_BIN" infer "${common[@]}" "${sampled[@]}" --coordinators 2 \
  --transport fabric --lookup-mode pull --output "$dir/c2_t.jsonl" >/dev/null
cmp "$dir/ref_t.jsonl" "$dir/c2_t.jsonl" || fail "C=2 sampled (fabric, pull) differs"
echo "ok  C=2 sampled, fabric pull: identical"

two=(--model "$dir/m2" --store "$dir/s2" --input "$dir/in.jsonl" --batch 3 --quiet)
"$US_BIN" infer "${two[@]}" "${sampled[@]}" --output "$dir/ref2.jsonl" >/dev/null
$MPIRUN -n 5 "$US_BIN" infer "${two[@]}" "${sampled[@]}" --coordinators 3 \
  --output "$dir/c3.jsonl" >/dev/null
cmp "$dir/ref2.jsonl" "$dir/c3.jsonl" || fail "C=3 on 2 shards differs"
echo "ok  C=3 on 5 ranks (2 shards), sampled: identical"

# sessions: six sessions over two jobs; both coordinators save and load
for i in 1 2 3 4 5 6; do
  printf '{"id":"k%d","session":"u%d","prompt":"session %d begins with a fairly long prompt","max_tokens":12}\n' $i $i $i
done >"$dir/k.jsonl"
for i in 1 2 3 4 5 6; do
  printf '{"id":"f%d","session":"u%d","prompt":" and continues","max_tokens":9}\n' $i $i
done >"$dir/f.jsonl"
sess=(--model "$dir/m" --store "$dir/s3" --quiet --batch 2 --temperature 0.7 --seed 4)
for k in k f; do
  "$US_BIN" infer "${sess[@]}" --input "$dir/$k.jsonl" --output "$dir/${k}_1.jsonl" \
    --sessions "$dir/sl" >/dev/null || fail "1-process sessions job $k"
  $MPIRUN -n 5 "$US_BIN" infer "${sess[@]}" --coordinators 2 --input "$dir/$k.jsonl" \
    --output "$dir/${k}_2.jsonl" --sessions "$dir/sd" >/dev/null || fail "C=2 sessions job $k"
  cmp "$dir/${k}_1.jsonl" "$dir/${k}_2.jsonl" || fail "sessions job $k: C=2 differs"
done
grep -q '"session_tokens"' "$dir/f_2.jsonl" || fail "no session lines in the follow-up"
echo "ok  sessions over two jobs from two coordinators: identical"

# kill -9 of one coordinator mid-run, then the same command again. 40 prompts,
# so the job is still running after the first 3 lines even when a loaded box
# lets the output arrive in bursts (13 could all be written before the kill).
for i in $(seq 1 40); do
  printf '{"id":"k%02d","prompt":"prompt number %d: the memory layer","max_tokens":%d}\n' \
    "$i" "$i" $((8 + i % 5))
done >"$dir/kin.jsonl"
kcommon=(--model "$dir/m" --store "$dir/s3" --input "$dir/kin.jsonl" --batch 4 --quiet)
"$US_BIN" infer "${kcommon[@]}" --output "$dir/kref.jsonl" >/dev/null
for victim in 0 1; do
  out="$dir/k$victim.jsonl"
  $MPIRUN -n 5 "$US_BIN" infer "${kcommon[@]}" --coordinators 2 --step-delay-ms 40 \
    --output "$out" >/dev/null 2>"$dir/k.err" &
  mpirun_pid=$!
  pid=""
  for _ in $(seq 1 300); do   # wait for 3 finished sequences, then find the rank
    if [ -f "$out" ] && [ "$(wc -l <"$out")" -ge 3 ]; then
      for p in $(pgrep -P "$mpirun_pid" || true); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
             grep -qx "OMPI_COMM_WORLD_RANK=$victim"; then
          pid=$p
        fi
      done
      break
    fi
    sleep 0.05
  done
  [ -n "$pid" ] || { kill "$mpirun_pid" || true; fail "rank $victim not found"; }
  kill -9 "$pid"
  if wait "$mpirun_pid"; then fail "job survived kill -9 of rank $victim"; fi
  before=$(wc -l <"$out")
  [ "$before" -lt 40 ] || fail "job finished before the kill of rank $victim"
  $MPIRUN -n 5 "$US_BIN" infer "${kcommon[@]}" --coordinators 2 --step-delay-ms 40 \
    --output "$out" >/dev/null || fail "rerun after killing rank $victim"
  cmp "$dir/kref.jsonl" "$out" || fail "rerun after killing rank $victim differs"
  echo "ok  kill -9 of rank $victim after $before sequences, rerun: identical"
done

# bad combinations: refused with a message naming the option
expect_fail() {   # expect_fail PATTERN CMD...
  local pat=$1; shift
  if "$@" >"$dir/bad.out" 2>&1; then fail "accepted: $*"; fi
  grep -q -- "$pat" "$dir/bad.out" || fail "no '$pat' in: $(cat "$dir/bad.out")"
}
expect_fail "leaves no shard rank" $MPIRUN -n 3 "$US_BIN" infer "${common[@]}" \
  --coordinators 3 --output "$dir/bad1.jsonl"
expect_fail "needs an mpirun job" "$US_BIN" infer "${common[@]}" --coordinators 2 \
  --output "$dir/bad2.jsonl"
expect_fail "store .* has 3 shards but this job has 2 shard ranks" $MPIRUN -n 4 "$US_BIN" \
  infer "${common[@]}" --coordinators 2 --output "$dir/bad3.jsonl"
expect_fail "\-\-coordinators" "$US_BIN" infer "${common[@]}" --coordinators 0 \
  --output "$dir/bad4.jsonl"
for b in 1 2 3 4; do [ ! -e "$dir/bad$b.jsonl" ] || fail "refused job $b wrote output"; done
echo '{"keep":1}' >"$dir/foreign.jsonl"   # coordinator 0 refuses it: all coordinators stop
expect_fail "exists but has no journal" $MPIRUN -n 5 "$US_BIN" infer "${common[@]}" \
  --coordinators 2 --output "$dir/foreign.jsonl"
[ "$(cat "$dir/foreign.jsonl")" = '{"keep":1}' ] || fail "refused job changed a foreign output"
echo "infer_multi ok"
