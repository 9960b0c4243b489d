#!/usr/bin/env bash
# Background scrub (infer --scrub-mb-per-s): shard ranks re-check their
# blocks' CRC-32C while idle between cycles and report what they find.
#   1. an undamaged store: every shard reports at least one full pass with
#      0 bad blocks, and the output equals a run without scrub;
#   2. a block damaged on disk after the job opened (and checked) the store,
#      as a failing disk would: the scrub names table, block and file while
#      the job runs; the job then either finishes (reporting 1 bad block) or,
#      if a lookup touches that block, fails naming it — never a silently
#      wrong answer.
set -euo pipefail
dir=$(mktemp -d); pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 5 --store "$dir/s" --shards 3 >/dev/null
for i in $(seq 1 8); do
  printf '{"id":"p%d","prompt":"scrub %d","max_tokens":10}\n' "$i" "$i"
done >"$dir/in.jsonl"
args=(infer --model "$dir/m" --store "$dir/s" --input "$dir/in.jsonl" --batch 2 --quiet)
$MPIRUN -n 4 "$US_BIN" "${args[@]}" --output "$dir/plain.jsonl" >/dev/null
$MPIRUN -n 4 "$US_BIN" "${args[@]}" --output "$dir/scrub.jsonl" --scrub-mb-per-s 100 \
  --step-delay-ms 20 >/dev/null 2>"$dir/scrub.err"
cmp "$dir/plain.jsonl" "$dir/scrub.jsonl"
cat "$dir/scrub.err"
for s in 0 1 2; do
  grep -Eq "shard $s: scrub checked [1-9][0-9]* blocks .* [1-9][0-9]* full passes\), 0 bad" \
    "$dir/scrub.err" || { echo "FAIL: shard $s reported no clean full pass"; exit 1; }
done

# Damage one block of shard 1 while the job runs (slot 1: header 4096 + one
# 4096-byte slot; the file is mapped MAP_SHARED, so the pages change in place).
$MPIRUN -n 4 "$US_BIN" "${args[@]}" --output "$dir/d.jsonl" --scrub-mb-per-s 100 \
  --step-delay-ms 100 >/dev/null 2>"$dir/d.err" &
pid=$!
for _ in $(seq 1 200); do [ -s "$dir/d.jsonl" ] && break; sleep 0.05; done
[ -s "$dir/d.jsonl" ] || { echo "FAIL: no output line before the damage"; exit 1; }
printf '\x5a\x5a' | dd of="$dir/s/table-0.shard-1.bin" bs=1 seek=$((4096 + 4096 + 40)) \
  conv=notrunc status=none
set +e; wait "$pid"; rc=$?; set -e; pid=""
cat "$dir/d.err"
grep -Eq "scrub: table .table_0. block [0-9]+ in file .*table-0.shard-1.bin.*refused from now on" "$dir/d.err" ||
  { echo "FAIL: the scrub did not name the damaged block and file"; exit 1; }
if [ "$rc" -eq 0 ]; then
  grep -q "shard 1: scrub checked .*, 1 bad" "$dir/d.err" ||
    { echo "FAIL: job finished without reporting the bad block"; exit 1; }
else
  grep -q "ECORRUPT" "$dir/d.err" || { echo "FAIL: exit $rc without ECORRUPT"; exit 1; }
fi
echo "scrub_dist ok (damaged run exit $rc)"
