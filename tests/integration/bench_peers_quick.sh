#!/usr/bin/env bash
# bench_peers_quick.sh — tests/bench/peers.sh in quick mode (~5 s): every peer
# (ultrashard 1/2 threads, redis, numpy, torch when importable) produced sums
# equal to UltraShard's before timing, the JSON lines are complete, and the
# redis server the script started is gone afterwards. No timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
if [ ! -x "$B/bench/bench_peers" ]; then
  pkg-config --exists hiredis || { echo "hiredis missing (deploy/setup.sh)"; exit 77; }
  make -s B="$B" "$B/bench/bench_peers"
fi
command -v redis-server >/dev/null || { echo "redis-server missing (deploy/setup.sh)"; exit 77; }
out=$(mktemp -d /tmp/us-peers-test.XXXXXX)
trap 'rm -rf "$out"' EXIT
US_BENCH_QUICK=1 US_BENCH_OUT="$out" bash tests/bench/peers.sh >"$out/log" 2>&1 ||
  { cat "$out/log"; exit 1; }
pid=$(sed -n 's/^peers: redis-server pid \([0-9]*\) .*/\1/p' "$out/log")
[ -n "$pid" ] || { echo "peers.sh did not report a redis-server pid"; exit 1; }
! kill -0 "$pid" 2>/dev/null || { echo "redis-server $pid left running"; exit 1; }
/usr/bin/python3 - "$out/peers.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
have = {(r["peer"], r.get("dist"), r["threads"]) for r in rows}
need = {("ultrashard", d, t) for d in ("uniform", "zipf") for t in (1, 2)}
need |= {(p, d, 1) for p in ("redis", "numpy") for d in ("uniform", "zipf")}
need |= {("limit_random_copy", "uniform", 1)}
assert need <= have, need - have
for r in rows:
    if "max_rel_err" in r:
        assert r["max_rel_err"] <= 1e-5, r
        assert r["tokens_per_s"] > 0 and r["batches"] == 40, r
    if r["peer"] == "redis":
        assert r["max_rel_err"] == 0, r      # same fused order as the kernel: bit-equal
        assert r["redis_rss"] > 65536 * 128 * 4 / 2, r
print("peers quick ok:", len(rows), "lines")
PY
