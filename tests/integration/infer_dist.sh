#!/usr/bin/env bash
# `infer` under mpirun: rank 0 decodes, 3 shard ranks serve the memory
# tables. Output must equal the single-process run byte for byte (greedy and
# sampled), over both transports; then kill -9 of the coordinator rank mid-run
# (mpirun ends the job) and a rerun of the same command must complete the
# file with nothing lost or duplicated, equal to the uninterrupted output.
set -euo pipefail
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s3" --shards 3 >/dev/null
for i in $(seq 1 12); do
  printf '{"id":"p%02d","prompt":"prompt number %d: the memory layer","max_tokens":%d}\n' \
    "$i" "$i" $((8 + i % 5))
done >"$dir/in.jsonl"
common=(--model "$dir/m" --store "$dir/s3" --input "$dir/in.jsonl" --batch 4 --quiet)

"$US_BIN" infer "${common[@]}" --output "$dir/ref.jsonl" >/dev/null
[ "$(wc -l <"$dir/ref.jsonl")" -eq 12 ]
for transport in mpi fabric; do
  $MPIRUN -n 4 "$US_BIN" infer "${common[@]}" --transport $transport \
    --output "$dir/d_$transport.jsonl" >/dev/null
  cmp "$dir/ref.jsonl" "$dir/d_$transport.jsonl"
  echo "4 ranks over $transport: identical to 1 process"
done
"$US_BIN" infer "${common[@]}" --temperature 0.8 --top-p 0.9 --seed 5 --output "$dir/ref_t.jsonl" >/dev/null
$MPIRUN -n 4 "$US_BIN" infer "${common[@]}" --temperature 0.8 --top-p 0.9 --seed 5 \
  --lookup-mode pull --output "$dir/d_t.jsonl" >/dev/null
cmp "$dir/ref_t.jsonl" "$dir/d_t.jsonl"
echo "sampled, pull mode: identical"

# kill -9 of the coordinator rank mid-run, then the same command again
out="$dir/k.jsonl"
$MPIRUN -n 4 "$US_BIN" infer "${common[@]}" --step-delay-ms 40 --output "$out" \
  >/dev/null 2>"$dir/k.err" &
mpirun_pid=$!
coord=""
for _ in $(seq 1 200); do   # wait for 3 finished sequences, find rank 0
  if [ -f "$out" ] && [ "$(wc -l <"$out")" -ge 3 ]; then
    for p in $(pgrep -P "$mpirun_pid" || true); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0'; then
        coord=$p
      fi
    done
    break
  fi
  sleep 0.05
done
[ -n "$coord" ] || { echo "FAIL: coordinator rank not found"; kill "$mpirun_pid" || true; exit 1; }
kill -9 "$coord"
wait "$mpirun_pid" && { echo "FAIL: job survived kill -9 of its coordinator"; exit 1; }
done_before=$(wc -l <"$out")
echo "killed coordinator after $done_before finished sequences"
[ "$done_before" -lt 12 ] || { echo "FAIL: job finished before the kill"; exit 1; }
$MPIRUN -n 4 "$US_BIN" infer "${common[@]}" --step-delay-ms 40 --output "$out" >/dev/null
cmp "$dir/ref.jsonl" "$out"
echo "infer_dist ok: restart completed the output exactly"
