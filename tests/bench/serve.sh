#!/usr/bin/env bash
# make bench-serve: `ultrashard serve` (mpirun: 1 coordinator + 3 shards, tiny
# model, 3-shard store) under 1, 4, 16, 64 concurrent clients on loopback
# (build/bench/bench_serve: one C client thread and connection each, R
# requests or S seconds, whichever comes first), for Lookup and Generate:
# requests/s, tokens/s, p50/p99 latency. Every answer is checked:
#  - Lookup (T tokens x k pairs of table_0, random rows): against an
#    in-process us_gather_sum of the same rows of values/table_0.npy, whose
#    own tokens/s (timed in bench_serve, same run) is the baseline:
#    ratio_to_local = served / in-process;
#  - Generate (greedy, 64 distinct prompts): tokens equal to `ultrashard
#    infer` of the same prompts; baseline = `mpirun -n 4 ultrashard infer
#    --store` (the same 1 + 3 ranks, while serve idles) of the same work
#    (requests x clients prompts) at --batch = the client count, run just
#    before and just after the served run, the better of the two:
#    ratio_to_infer = served generated tokens/s / infer's.
# JSON lines on stdout and appended to bench/results/serve.jsonl; a table at
# the end. Short by default (~1-2 min): US_BENCH_SERVE_LOOKUPS (requests per
# client, default 400), US_BENCH_SERVE_GENERATES (default 8), _SECONDS (cap per
# run, default 8), _CLIENTS (default "1 4 16 64"), _TOKENS / _K (lookup shape,
# default 16 x 8), _MAX_TOKENS (per prompt, default 16).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
B=${B:-build}
US_BIN=${US_BIN:-$PWD/$B/ultrashard}
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none}
export US_BIN MPIRUN
source tests/tools/serve_env.bash
BENCH="$B/bench/bench_serve"
clients_list=${US_BENCH_SERVE_CLIENTS:-1 4 16 64}
lookups=${US_BENCH_SERVE_LOOKUPS:-400} generates=${US_BENCH_SERVE_GENERATES:-8}
secs=${US_BENCH_SERVE_SECONDS:-8} max_tokens=${US_BENCH_SERVE_MAX_TOKENS:-16}
tokens=${US_BENCH_SERVE_TOKENS:-16} k=${US_BENCH_SERVE_K:-8}

dir=$(mktemp -d)
pid=""
cleanup() { [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
serve_model "$dir"
for i in $(seq 1 64); do
  printf '{"id":"p%d","prompt":"request %d: the quick brown fox","max_tokens":%d}\n' \
    "$i" "$i" "$max_tokens"
done >"$dir/in.jsonl"

mkdir -p bench/results
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
emit() {   # a JSON line -> stdout and the results file, stamped
  sed -u "s/^{/{\"time\":\"$stamp\",\"commit\":\"$commit\",/" | tee -a bench/results/serve.jsonl
}

infer_run() {   # C FILE -> infer's generated tokens/s at --batch C (same 1 + 3 ranks)
  local line
  line=$($MPIRUN -n 4 "$US_BIN" infer --model "$dir/m" --store "$dir/s3" --input "$2" \
           --output "$dir/infer_out.jsonl" --batch "$1" --batch-tokens $(($1 * 16)) --quiet)
  rm -f "$dir/infer_out.jsonl" "$dir/infer_out.jsonl.journal"
  echo "{\"bench\":\"serve\",\"op\":\"infer_baseline\",\"batch\":$1,\"run\":$line}" | emit >&2
  echo "$line" | grep -o '"generated_tokens_per_s":[0-9.]*' | cut -d: -f2
}
# the expected tokens of the 64 prompts
$MPIRUN -n 4 "$US_BIN" infer --model "$dir/m" --store "$dir/s3" --input "$dir/in.jsonl" \
  --output "$dir/ref.jsonl" --batch 16 --quiet >/dev/null
port=$(serve_free_port)
serve_cmd "$dir" "$port" --max-connections 256
"${SERVE_CMD[@]}" >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
serve_wait "$port" || { tail "$dir/serve.err"; exit 1; }
failed=0
for c in $clients_list; do
  "$BENCH" --connect "127.0.0.1:$port" --clients "$c" --requests "$lookups" --seconds "$secs" \
    lookup --table table_0 --values "$dir/m/values/table_0.npy" --tokens "$tokens" --k "$k" \
    | emit || failed=1
  # infer baseline of the same work (generates x c prompts at --batch c), run
  # before and after the served run (the better counts: the box is shared)
  awk -v n=$((generates * c)) '{ l[NR] = $0 } END { for (i = 0; i < n; i++) {
      s = l[i % NR + 1]; sub(/"id":"[^"]*"/, "\"id\":\"q" i "\"", s); print s } }' \
    "$dir/in.jsonl" >"$dir/in_$c.jsonl"
  t1=$(infer_run "$c" "$dir/in_$c.jsonl")
  line=$("$BENCH" --connect "127.0.0.1:$port" --clients "$c" --requests "$generates" \
           --seconds "$secs" generate --prompts "$dir/in.jsonl" --expect "$dir/ref.jsonl") || failed=1
  t2=$(infer_run "$c" "$dir/in_$c.jsonl")
  best=$(awk -v a="$t1" -v b="$t2" 'BEGIN { print (a > b) ? a : b }')
  ratio=$(echo "$line" | awk -v b="$best" '{ match($0, /"tokens_per_s":[0-9.]+/);
      t = substr($0, RSTART + 15, RLENGTH - 15); printf "%.4f", (b > 0) ? t / b : 0 }')
  echo "$line" | sed "s/}\$/,\"infer_tokens_per_s\":$best,\"infer_runs\":[$t1,$t2],\"ratio_to_infer\":$ratio}/" | emit
done
rc=0; serve_stop "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { echo "bench-serve: serve exited $rc after SIGTERM" >&2; failed=1; }
echo
/usr/bin/python3 - "$stamp" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("bench/results/serve.jsonl")]
rows = [r for r in rows if r.get("time") == sys.argv[1] and r.get("op") in ("lookup", "generate")]
print("%-9s %7s %10s %12s %9s %9s %12s" % ("op", "clients", "req/s", "tokens/s", "p50 ms",
                                          "p99 ms", "ratio"))
for r in rows:
    ratio = r.get("ratio_to_local", r.get("ratio_to_infer", 0))
    base = "local" if "ratio_to_local" in r else "infer"
    print("%-9s %7d %10.1f %12.1f %9.3f %9.3f %6.4f %s" % (r["op"], r["clients"],
          r["requests_per_s"], r["tokens_per_s"], r["p50_ms"], r["p99_ms"], ratio, base))
PY
exit $failed
