#!/usr/bin/env bash
# Under mpirun, the rank that cannot open its shard file always gets its own
# message to the user before the job is torn down (us_world_agree): 20 runs
# of `mpirun -n 4 infer` on a store with a deleted shard file, every one
# exits non-zero and names the missing file.
set -euo pipefail
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s" --shards 3 >/dev/null
printf '{"id":"a","prompt":"hello memory","max_tokens":4}\n' >"$dir/in.jsonl"
rm "$dir/s/table-0.shard-1.bin"
for i in $(seq 1 20); do
  rm -f "$dir/out.jsonl"*
  if $MPIRUN -n 4 "$US_BIN" infer --model "$dir/m" --store "$dir/s" --input "$dir/in.jsonl" \
       --output "$dir/out.jsonl" --quiet >"$dir/log" 2>&1; then
    echo "FAIL: run $i exited 0 without a shard file"; exit 1
  fi
  grep -q "table-0.shard-1.bin" "$dir/log" || {
    echo "FAIL: run $i: the missing file is not named"; cat "$dir/log"; exit 1; }
done
grep -q "aborted: rank 2 failed" "$dir/log" || { echo "FAIL: rank 0 does not name rank 2"; cat "$dir/log"; exit 1; }
echo "store_missing_mpi ok: 20 of 20 runs named the missing file"
