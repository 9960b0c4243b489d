#!/usr/bin/env bash
# `make bench-plan_check`: `ultrashard plan`'s predictions against runs
# measured here, same run; reports the prediction error (predicted/measured - 1).
#   gather   the planner's per-row gather cost (t_row = row_ns + bytes /
#            gather bandwidth, its defaults: LAB.md's 1-thread random-row fit)
#            vs UltraShard's gather kernel, 1 thread, uniform rows, f32 rows
#            of 64 B .. 4 KiB (bench_peers, a 256 MiB table)
#   lookup   when this build has `ultrashard bench lookup` (branch lookup):
#            network bytes and messages per token of 1..4 shard runs under
#            mpirun vs the planner at the same shards, both placements and
#            modes; skipped with a note otherwise
# JSON lines: stdout and bench/results/plan_check.jsonl; then a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
US_BIN=${US_BIN:-$PWD/$B/ultrashard}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_PROC_BIND=false
mkdir -p bench/results
OUT=${US_BENCH_OUT:-bench/results}/plan_check.jsonl
MPIRUN=${MPIRUN:-mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none --bind-to none}
export OMPI_MCA_mpi_yield_when_idle=1
quick=${US_BENCH_QUICK:-0}
table_mib=256; batches=400; dims="16 64 256 1024"
[ "$quick" = 1 ] && { table_mib=64; batches=30; dims="16 256"; }
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
run=$(mktemp /tmp/us-plancheck.XXXXXX)
trap 'rm -f "$run"' EXIT
tokens=64; k=32

emit() {  # label metric unit predicted measured
  /usr/bin/python3 -c '
import json, sys
label, metric, unit, p, m = sys.argv[1:6]
p, m = float(p), float(m)
print(json.dumps({"time": sys.argv[6], "commit": sys.argv[7], "bench": "plan_check",
                  "label": label, "metric": metric, "unit": unit, "predicted": p,
                  "measured": m, "error": p / m - 1 if m else None}))' "$@" "$stamp" "$commit" | tee -a "$run"
}

# --- gather cost per row ---------------------------------------------------
for dim in $dims; do
  rows=$(( table_mib * 1048576 / (dim * 4) ))
  p2=1; while [ $((p2 * 2)) -le "$rows" ]; do p2=$((p2 * 2)); done
  meas=$("$B/bench/bench_peers" --rows "$p2" --dim "$dim" --tokens $tokens --k $k \
           --batches $batches --reps 5 --max-threads 1 |
         /usr/bin/python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    if r["peer"] == "ultrashard" and r["dist"] == "uniform" and r["threads"] == 1:
        print(r["seconds"] / (r["batches"] * r["tokens"] * r["k"]) * 1e9)')
  pred=$("$US_BIN" plan --json --values "$p2" --dim "$dim" --dtype f32 --layers 1 --heads 1 \
           --k $k --batch $tokens --shards 1 --cores 1 |
         /usr/bin/python3 -c 'import json,sys
r = json.loads(sys.stdin.readline())
print(r["t_gather_us"] * 1e3 / (r["batch"] * r["k"]))')
  emit "gather $((dim * 4)) B" gather_ns_per_row ns "$pred" "$meas"
done

# --- distributed lookup: bytes, messages and latency per token ------------
# `bench lookup` with uniform keys (--hot 0) on 1 coordinator + S shards,
# one host (vader shared memory), mpi transport, both placements and modes;
# the planner at the same S with the expected unique-row fraction of a batch,
# link = LAB.md's vader numbers (0.2 us, ~10 GB/s) and the gather cost
# calibrated above (latency is the least certain part: software overheads).
calib() {  # prints "--row-ns X --gather-gbs Y" from the gather points so far
  /usr/bin/python3 - "$run" <<'PY'
import json, sys
pts = [(float(r["label"].split()[1]), r["measured"]) for r in map(json.loads, open(sys.argv[1]))
       if r["metric"] == "gather_ns_per_row"]
s11 = sum(1 / y**2 for _, y in pts); s12 = sum(x / y**2 for x, y in pts)
s22 = sum(x * x / y**2 for x, y in pts)
t1 = sum(1 / y for _, y in pts); t2 = sum(x / y for x, y in pts)
det = s11 * s22 - s12 * s12
a = max(0.0, (t1 * s22 - t2 * s12) / det); b = (s11 * t2 - s12 * t1) / det
print(f"--row-ns {a:.2f} --gather-gbs {1 / b if b > 0 else 1e3:.3f}")
PY
}
if "$US_BIN" bench lookup --help >/dev/null 2>&1; then
  lrows=131072; ldim=128; ltok=256; lk=32
  shards_list="2 4"; [ "$quick" = 1 ] && shards_list="2"
  cal=$(calib)
  for s in $shards_list; do
    out=$($MPIRUN -n $((s + 1)) "$US_BIN" bench lookup --transports mpi --modes push,pull \
            --placements row,column --rows $lrows --dim $ldim --tokens $ltok --k $lk \
            --batches 20 --hot 0 2>/dev/null | grep '^{') || out=""
    [ -n "$out" ] || { echo "plan_check: bench lookup with $s shards gave no JSON" >&2; continue; }
    u=$(/usr/bin/python3 -c "n=$lrows; p=$ltok*$lk; print(n*(1-(1-1/n)**p)/p)")
    # shellcheck disable=SC2086
    pj=$("$US_BIN" plan --json --values $lrows --dim $ldim --dtype f32 --layers 1 --heads 1 \
           --k $lk --batch $ltok --shards "$s" --unique-fraction "$u" --cores 1 \
           --nic-gbit 80 --nic-latency-us 0.2 $cal)
    while IFS=$'\t' read -r pv mv label metric unit; do
      emit "$label" "$metric" "$unit" "$pv" "$mv"
    done < <(/usr/bin/python3 - "$out" "$pj" "$s" "$ltok" <<'PY'
import json, sys
meas = [json.loads(l) for l in sys.argv[1].splitlines()]
plan = {(r["placement"], r["mode"]): r for r in map(json.loads, sys.argv[2].splitlines())}
S, T = sys.argv[3], float(sys.argv[4])
for m in meas:
    p = plan[(m["placement"], m["mode"])]
    tag = f"{m['placement']}/{m['mode']}/S={S}"
    for pred, got, what, unit in (
            (p["request_bytes_per_token"], m["bytes_sent_per_token"], "request_bytes_per_token", "B"),
            (p["response_bytes_per_token"], m["bytes_recv_per_token"], "response_bytes_per_token", "B"),
            (p["messages_per_token"], m["msgs_per_batch"] / T, "messages_per_token", ""),
            (p["round_latency_us"] / 1e3, m["p50_ms"], "round_latency_ms", "ms")):
        short = {"request_bytes_per_token": "req B/tok", "response_bytes_per_token": "resp B/tok",
                 "messages_per_token": "msgs/tok", "round_latency_ms": "p50 ms"}[what]
        print(pred, got, f"{short} {tag}", what, unit, sep="\t")
PY
)
  done
else
  echo "plan_check: this build has no 'ultrashard bench lookup' (branch lookup): network predictions not checked" >&2
fi

# Calibration: a fit (least squared relative error) of the measured gather points to
# t_row = row_ns + bytes / gather_bandwidth gives the --row-ns / --gather-gbs
# to pass to `ultrashard plan` on this machine; the refit error is reported.
/usr/bin/python3 - "$run" <<'PY'
import json, sys
path = sys.argv[1]
rows = [json.loads(l) for l in open(path)]
pts = [(float(r["label"].split()[1]), r["measured"]) for r in rows
       if r["metric"] == "gather_ns_per_row"]
out = open(path, "a")
if len(pts) >= 2:
    # minimise the sum of squared relative errors ((a + b x) / y - 1)^2:
    # linear least squares in (a, b) with rows (1/y, x/y) and target 1
    s11 = sum(1 / y**2 for _, y in pts); s12 = sum(x / y**2 for x, y in pts)
    s22 = sum(x * x / y**2 for x, y in pts)
    t1 = sum(1 / y for _, y in pts); t2 = sum(x / y for x, y in pts)
    det = s11 * s22 - s12 * s12
    icpt = max(0.0, (t1 * s22 - t2 * s12) / det)
    slope = (s11 * t2 - s12 * t1) / det
    gbs = 1 / slope if slope > 0 else float("inf")
    base = dict(rows[0]); base.pop("error", None)
    for x, y in pts:
        p = icpt + x * slope
        rec = dict(base, label=f"calibrated {int(x)} B", metric="gather_ns_per_row_calibrated",
                   unit="ns", predicted=p, measured=y, error=p / y - 1)
        out.write(json.dumps(rec) + "\n")
    rec = dict(base, label="calibration", metric="calibration", unit="", predicted=icpt, measured=gbs,
               error=None, row_ns=icpt, gather_gbs=gbs)
    out.write(json.dumps(rec) + "\n")
    print(f"calibration for this machine: ultrashard plan --row-ns {icpt:.1f} --gather-gbs {gbs:.2f}")
PY
cat "$run" >>"$OUT"
/usr/bin/python3 - "$run" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["metric"] != "calibration"]
print(f"\n{'prediction':<40} {'predicted':>12} {'measured':>12} {'error':>8}")
for r in rows:
    e = f"{r['error'] * 100:+.0f}%" if r["error"] is not None else "-"
    print(f"{r['label']:<40} {r['predicted']:>12.4g} {r['measured']:>12.4g} {e:>8}")
PY
