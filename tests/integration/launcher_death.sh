#!/usr/bin/env bash
# kill -9 of mpirun during an infer: every rank is gone within a bounded time
# (the launcher watchdog in proto/world.c polls every 50 ms; typically gone in
# 0.3-0.4 s, the 5 s bound leaves room for a loaded 2-core box, where 2 of 16
# runs once took just over 2 s) and the output file stops growing.
set -euo pipefail
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s" --shards 3 >/dev/null
for i in $(seq 1 40); do
  printf '{"id":"p%02d","prompt":"prompt %d","max_tokens":12}\n' "$i" "$i"
done >"$dir/in.jsonl"
out="$dir/out.jsonl"
$MPIRUN -n 4 "$US_BIN" infer --model "$dir/m" --store "$dir/s" --input "$dir/in.jsonl" \
  --output "$out" --batch 1 --step-delay-ms 40 --quiet >/dev/null 2>&1 &
mpirun_pid=$!
for _ in $(seq 1 400); do
  [ -f "$out" ] && [ "$(wc -l <"$out")" -ge 2 ] && break
  sleep 0.05
done
mapfile -t pids < <(pgrep -P "$mpirun_pid" || true)
[ "${#pids[@]}" -eq 4 ] || { echo "FAIL: found ${#pids[@]} rank processes, want 4"; exit 1; }
kill -9 "$mpirun_pid"
wait "$mpirun_pid" 2>/dev/null || true
alive() {   # ranks neither gone nor zombies
  local n=0
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null && [ "$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null)" != Z ]; then
      n=$((n + 1))
    fi
  done
  echo $n
}
waited=0
while [ "$(alive)" -gt 0 ] && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
[ "$(alive)" -eq 0 ] || { echo "FAIL: $(alive) rank processes still running 5 s after mpirun was killed"; exit 1; }
echo "ranks gone $((waited * 100)) ms after mpirun was killed"
size=$(stat -c %s "$out")
sleep 1
[ "$(stat -c %s "$out")" -eq "$size" ] || { echo "FAIL: output grew after the ranks should be gone"; exit 1; }
echo "launcher_death ok: ${#pids[@]} ranks gone within 5 s, output stopped at $size bytes"
