#!/usr/bin/env bash
# `make bench-models`: decoding time per token vs batch size for dense, MoE
# (top-2 of 32 experts) and UltraMem models of equal activated parameters
# (MoE and UltraMem also of equal total parameters), Infini-attention
# segment 2048, all in this engine (tests/bench/bench_models.c says how they
# are scaled down to this machine). One thread for BLAS and OpenMP, so the
# curves are about bytes and flops, not thread contention on 2 shared cores.
# JSON lines: stdout and bench/results/models.jsonl; then a table with the
# UltraMem/MoE and UltraMem/dense time ratios per batch (same run).
# US_BENCH_QUICK=1: batches 1, 8, 64 and a short budget.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_PROC_BIND=false
# the same OpenBLAS kernels as bench-kernels (AVX-512 where the CPU has it;
# until 2026-12-04 this script always chose Haswell)
. tests/bench/lib/openblas_coretype.sh
mkdir -p bench/results
OUT=${US_BENCH_OUT:-bench/results}/models.jsonl
if [ "${US_BENCH_QUICK:-0}" = 1 ]; then
  args=(--batches 1,8,64 --budget-ms 50 --context 64)
else
  args=(--batches 1,2,4,8,16,32,64,128,256 --budget-ms 800 --context 64)
fi
[ -x "$B/bench/bench_models" ] || { echo "models: build first (make benches)" >&2; exit 1; }
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
run=$(mktemp /tmp/us-models.XXXXXX)
trap 'rm -f "$run"' EXIT
"$B/bench/bench_models" "${args[@]}" | sed -u "s/^{/{\"time\":\"$stamp\",\"commit\":\"$commit\",\"openblas_coretype\":\"${OPENBLAS_CORETYPE:-auto}\",/" | tee "$run"
cat "$run" >>"$OUT"
/usr/bin/python3 - "$run" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["model"], r["batch"]): r for r in rows}
models = [m for m in ("dense", "moe", "ultramem") if any(k[0] == m for k in by)]
print()
for m in models:
    r = next(r for r in rows if r["model"] == m)
    print(f"{m:<9} total params {r['total_params'] / 1e6:6.2f} M, activated {r['activated_params'] / 1e6:5.2f} M")
print(f"\n{'batch':>5} " + " ".join(f"{m + ' ms/tok':>16}" for m in models) +
      f" {'ultramem/moe':>13} {'ultramem/dense':>15} " + " ".join(f"{m + ' MiB/tok':>16}" for m in models))
for b in sorted({k[1] for k in by}):
    t = {m: by[(m, b)]["ms_per_token"] for m in models if (m, b) in by}
    mb = {m: by[(m, b)]["bytes_read_per_token"] / 2**20 for m in models if (m, b) in by}
    um_moe = t["ultramem"] / t["moe"] if "ultramem" in t and "moe" in t else float("nan")
    um_de = t["ultramem"] / t["dense"] if "ultramem" in t and "dense" in t else float("nan")
    print(f"{b:>5} " + " ".join(f"{t.get(m, float('nan')):>16.3f}" for m in models) +
          f" {um_moe:>13.2f} {um_de:>15.2f} " + " ".join(f"{mb.get(m, float('nan')):>16.2f}" for m in models))
print("\nbytes/token: modelled parameter + KV-cache bytes read per token (see bench_models.c)")
PY
