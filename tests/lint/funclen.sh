#!/usr/bin/env bash
# No product function longer than MAX lines (default 80), counted from the last
# line of its signature through its closing brace. Functions here open with "{"
# and close with "}" in column 0.
set -u
cd "$(dirname "$0")/../.."
MAX=${MAX:-80}
out=$(awk -v max="$MAX" '
  FNR == 1 { start = 0 }
  /^\{/    { start = FNR; name = prev }
  /^\}/    { if (start && FNR - start + 2 > max)
               printf "%s:%d: %d lines: %s\n", FILENAME, start - 1, FNR - start + 2, name
             start = 0 }
  { prev = $0 }' kernels/*.c proto/*.c shard/*.c coordinator/*/*.c)
n=$(printf '%s' "$out" | grep -c . || true)
[ -n "$out" ] && echo "$out"
echo "funclen: $n functions over $MAX lines"
[ "$n" -eq 0 ]
