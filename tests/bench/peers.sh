#!/usr/bin/env bash
# `make bench-peers`: UltraShard's local lookup kernel vs peers on the same
# rows and the same (row, weight) lookups, uniform and Zipf keys, same run:
#   ultrashard  us_gather_sum over a RAM table (the baseline of every ratio)
#   redis       redis-server started here on 127.0.0.1 (free port, no
#               persistence), rows as binary strings, pipelined MGET per batch
#   numpy       fancy indexing + batched weighted sum (/usr/bin/python3)
#   torch       nn.EmbeddingBag(mode='sum', per_sample_weights), only when
#               `import torch` works (Debian python3-torch; not installed by us)
# plus the machine's limits first (sequential read, plain random-row copy).
# All peers' sums are checked against UltraShard's before timing.
# JSON lines: stdout and appended to bench/results/peers.jsonl; then a table of
# UltraShard/peer throughput ratios and memory. US_BENCH_QUICK=1: small sizes.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=1 OMP_PROC_BIND=false
mkdir -p bench/results
OUT=${US_BENCH_OUT:-bench/results}/peers.jsonl
if [ "${US_BENCH_QUICK:-0}" = 1 ]; then
  args=(--rows 65536 --dim 128 --batches 40 --reps 2)
else
  args=(--rows 524288 --dim 256 --batches 200 --reps 3)
fi
[ -x "$B/bench/bench_peers" ] || { echo "peers: build first (make benches)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/us-peers.XXXXXX)
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=0
if command -v redis-server >/dev/null; then
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --protected-mode yes --loglevel warning >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  echo "peers: redis-server pid $redis_pid on 127.0.0.1:$port" >&2
else
  echo "peers: redis-server not installed (deploy/setup.sh): redis peer skipped" >&2
fi

stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
tag() { sed -u "s/^{/{\"time\":\"$stamp\",\"commit\":\"$commit\",/"; }
run="$tmp/run.jsonl"
"$B/bench/bench_peers" "${args[@]}" --redis-port "$port" --dump "$tmp" | tag | tee "$run"
/usr/bin/python3 tests/bench/peers_numpy.py "$tmp" | tag | tee -a "$run"
cat "$run" >>"$OUT"

/usr/bin/python3 - "$run" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
base = {(r["dist"]): r for r in rows if r["peer"] == "ultrashard" and r["threads"] == 1}
lim = {r["peer"]: r for r in rows if r["peer"].startswith("limit")}
print()
print(f"limits: sequential read {lim['limit_seq_read']['gb_per_s']:.2f} GB/s, "
      f"random-row copy {lim['limit_random_copy']['row_gb_per_s']:.2f} GB/s (1 thread)")
r0 = rows[-1]
print(f"table {r0['rows']} x {r0['dim']} f32; {r0['batches']} batches of {r0['tokens']} tokens x k {r0['k']}")
print(f"{'peer':<20} {'dist':<8} {'thr':>3} {'tokens/s':>11} {'row GB/s':>9} "
      f"{'ultrashard/peer':>15} {'max rel err':>11} {'memory MiB':>10}")
for r in rows:
    if r["peer"].startswith("limit_seq"):
        continue
    b = base[r["dist"]]
    ratio = b["tokens_per_s"] / r["tokens_per_s"]
    print(f"{r['peer']:<20} {r['dist']:<8} {r['threads']:>3} {r['tokens_per_s']:>11.4g} "
          f"{r['row_gb_per_s']:>9.3f} {ratio:>15.2f} {r['max_rel_err']:>11.2g} "
          f"{r['mem_bytes'] / 2**20:>10.1f}")
print("memory: ultrashard/numpy/torch = the f32 table in RAM; redis = its RSS (INFO used_memory_rss)")
PY
