#!/usr/bin/env bash
# Runs each libFuzzer harness $B/fuzz/fuzz_NAME for FUZZ_SECONDS seconds, one
# at a time, on a copy of tests/fuzz/corpus/NAME (the checked-in seeds never
# grow), with tests/fuzz/NAME.dict when there is one. Prints one line per
# harness with its executions, then the total; exits 1 if any harness found a
# crash, leak or timeout (the input is saved as $B/fuzz-artifacts/NAME-*).
#   FUZZ_ONLY="npy wire"  run just these harnesses
#   FUZZ_RSS_MB           libFuzzer's -rss_limit_mb (default 2048)
set -u
cd "$(dirname "$0")/../.."
root=$PWD
B=${B:-build/fuzz}
case $B in /*) ;; *) B=$root/$B ;; esac
SECONDS_EACH=${FUZZ_SECONDS:-10}
RSS_MB=${FUZZ_RSS_MB:-2048}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
mkdir -p "$B/fuzz-logs" "$B/fuzz-artifacts" "$B/fuzz-work"

names=${FUZZ_ONLY:-$(for f in tests/fuzz/fuzz_*.c; do n=${f##*/fuzz_}; echo "${n%.c}"; done)}
total=0; failed=()
for name in $names; do
  bin="$B/fuzz/fuzz_$name"
  if [ ! -x "$bin" ]; then
    echo "fuzz $name: $bin missing (make fuzz builds it)"; failed+=("$name"); continue
  fi
  work="$B/fuzz-work/$name"
  rm -rf "$work"; mkdir -p "$work/corpus"
  [ -d "tests/fuzz/corpus/$name" ] && cp tests/fuzz/corpus/"$name"/* "$work/corpus"/ 2>/dev/null
  dict=(); [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="$root/tests/fuzz/$name.dict")
  log="$B/fuzz-logs/$name.log"
  # from inside the work directory: crash handlers may drop files in the cwd
  (cd "$work" && "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_MB" \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$B/fuzz-artifacts/$name-" \
    "${dict[@]}" "$work/corpus") >"$log" 2>&1
  rc=$?
  execs=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  [ -n "$execs" ] || execs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | awk '{print $2}')
  execs=${execs:-0}
  total=$((total + execs))
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $name: $execs execs in ${SECONDS_EACH}s, corpus $(ls "$work/corpus" | wc -l) inputs"
  else
    failed+=("$name")
    echo "fuzz $name: FAILED (exit $rc) after $execs execs — log: $log"
    grep -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|fuzz check failed|Test unit written' "$log" |
      head -8 | sed 's/^/    /'
  fi
done
echo "fuzz total: $total execs"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz failed: ${failed[*]}"
  exit 1
fi
