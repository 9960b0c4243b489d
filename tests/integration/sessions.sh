#!/usr/bin/env bash
# Durable cross-job sessions (infer --sessions DIR):
#  1. a session fed over three jobs generates exactly what one job with the
#     concatenated prompt generates (Infini-attention M, z and the unfinished
#     segment's tokens carry across jobs; prompts cross segment boundaries);
#  2. kill -9 mid-job + restart: output and the sessions' later behaviour
#     equal an uninterrupted run;
#  3. crash between the session save and the journal record (simulated by
#     cutting the last journal record): the restart re-journals the stored
#     result and does not apply the sequence to the session twice;
#  4. misuse: a session line without --sessions, a session used twice in one
#     file, a bad session id -> errors naming the line.
set -euo pipefail
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d); pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 9 >/dev/null
run() { "$US_BIN" infer --model "$dir/m" --quiet "$@" >/dev/null; }

# 1. three jobs on one session == one long prompt
. "$(dirname "$0")/lib/three_part_session.sh"
write_three_part_session "$dir"
for k in 1 2 3; do
  run --input "$dir/j$k.jsonl" --output "$dir/o$k.jsonl" --sessions "$dir/s" || fail "job $k"
done
run --input "$dir/one.jsonl" --output "$dir/one.out" || fail "one-job run"
got=$(grep -o '"tokens":\[[0-9,]*\]' "$dir/o3.jsonl"); want=$(grep -o '"tokens":\[[0-9,]*\]' "$dir/one.out")
[ -n "$want" ] && [ "$got" = "$want" ] || fail "session over 3 jobs: $got, one job: $want"
total=$(( 1 + THREE_PART_BYTES + 24 ))
grep -q "\"session_tokens\":$total" "$dir/o3.jsonl" || fail "session_tokens: $(cat "$dir/o3.jsonl"), want $total"
echo "ok  3-job session == one prompt ($total tokens)"

# 2. kill -9 + restart; then a follow-up job must behave the same on both dirs
for i in 1 2 3 4 5 6; do
  printf '{"id":"k%d","session":"u%d","prompt":"session %d begins with a fairly long prompt text","max_tokens":14}\n' $i $i $i
done > "$dir/k.jsonl"
for i in 1 2 3 4 5 6; do
  printf '{"id":"f%d","session":"u%d","prompt":" and continues","max_tokens":10}\n' $i $i
done > "$dir/f.jsonl"
args=(--input "$dir/k.jsonl" --batch 2 --batch-tokens 16 --temperature 0.7 --seed 4)
run "${args[@]}" --output "$dir/kref.jsonl" --sessions "$dir/sref" || fail "reference"
"$US_BIN" infer --model "$dir/m" --quiet "${args[@]}" --output "$dir/k.out" --sessions "$dir/sk" \
  --step-delay-ms 25 >/dev/null &
pid=$!
for _ in $(seq 1 400); do
  [ -f "$dir/k.out.journal" ] && [ "$(wc -l < "$dir/k.out.journal")" -ge 3 ] && break
  sleep 0.02
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
n=$(( $(wc -l < "$dir/k.out.journal") - 1 ))
[ "$n" -ge 2 ] && [ "$n" -lt 6 ] || fail "kill landed outside the run ($n records)"
run "${args[@]}" --output "$dir/k.out" --sessions "$dir/sk" || fail "restart"
cmp "$dir/kref.jsonl" "$dir/k.out" || fail "session job output after kill -9 differs"
run --input "$dir/f.jsonl" --output "$dir/fref.jsonl" --sessions "$dir/sref" || fail "follow-up ref"
run --input "$dir/f.jsonl" --output "$dir/fk.jsonl" --sessions "$dir/sk" || fail "follow-up"
cmp "$dir/fref.jsonl" "$dir/fk.jsonl" || fail "sessions after kill -9 behave differently"
echo "ok  kill -9 after $n of 6 session sequences: same output, same sessions"

# 3. saved to the session but not journaled: cut the last journal record
last=$(tail -1 "$dir/fk.jsonl.journal" | grep -o '"session":"u[0-9]"' | cut -d'"' -f4)
gens_before=$(ls "$dir/sk/sessions/$last")
head -n -1 "$dir/fk.jsonl.journal" > "$dir/cut" && cat "$dir/cut" > "$dir/fk.jsonl.journal"
run --input "$dir/f.jsonl" --output "$dir/fk.jsonl" --sessions "$dir/sk" || fail "restart after cut"
cmp "$dir/fref.jsonl" "$dir/fk.jsonl" || fail "re-journaled output differs"
[ "$(ls "$dir/sk/sessions/$last")" = "$gens_before" ] || fail "session $last was applied twice"
echo "ok  saved-not-journaled sequence of session $last re-journaled, session unchanged"

# 4. misuse
expect() {
  local re=$1; shift
  if "$US_BIN" infer --model "$dir/m" --quiet "$@" >/dev/null 2>"$dir/err"; then fail "accepted: $*"; fi
  grep -Eq "$re" "$dir/err" || fail "message '$(cat "$dir/err")' does not match /$re/"
  echo "ok  $(head -c 150 "$dir/err")"
}
expect 'j3\.jsonl:1: line continues session "s1" but no --sessions' --input "$dir/j3.jsonl" --output "$dir/x"
printf '{"id":"a","session":"z","prompt":"x"}\n{"id":"b","session":"z","prompt":"y"}\n' > "$dir/dup.jsonl"
expect 'dup\.jsonl:2: session "z" is already used on line 1' --input "$dir/dup.jsonl" --output "$dir/x" --sessions "$dir/s"
printf '{"id":"a","session":"../etc","prompt":"x"}\n' > "$dir/bad.jsonl"
expect 'bad\.jsonl:1: "session":' --input "$dir/bad.jsonl" --output "$dir/x" --sessions "$dir/s"
[ ! -e "$dir/x" ] || fail "an output was created by a refused job"
echo "sessions ok"
