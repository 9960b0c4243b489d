#!/usr/bin/env bash
# The model with its memory values on shard ranks (coordinator/model/memory_dist.h)
# gives the numpy reference's logits (tests/ref/model.py, 1e-4 absolute):
# tiny preset in 4 ranks (1 coordinator + 3 shards) over both transports and
# both gather modes, and with chunks crossing segment boundaries (bigger
# lookup rounds, model_logits "span"); a two-memory-layer model (skip 2, two tables served in
# cyclic table order) fed token by token in 3 ranks (2 shards), and with the
# model variants combined (rope, 2 cores, l2 query norm, output gate); a store
# whose shard count does not match the job is refused, naming both counts.
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 with numpy not available"; exit 77; }
tool="$B/tools/model_logits"
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 7 --store "$dir/s3" --shards 3 >/dev/null
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(3)
np.concatenate([[256], rng.integers(0, 256, 43)]).astype('<i4').tofile('$dir/tok.i32')"
check() { /usr/bin/python3 tests/ref/model.py check "$1" "$dir/tok.i32" "$2" 1e-4; }
for transport in mpi fabric; do
  for mode in push pull; do
    rm -f "$dir/c.f32"
    $MPIRUN -n 4 "$tool" "$dir/m" "$dir/tok.i32" "$dir/c.f32" prefill "$dir/s3" $transport $mode
    echo -n "4 ranks, $transport, $mode: "; check "$dir/m" "$dir/c.f32"
  done
done
$MPIRUN -n 4 "$tool" "$dir/m" "$dir/tok.i32" "$dir/c_span.f32" span "$dir/s3" mpi auto
echo -n "4 ranks, mpi, auto, chunks across segments: "; check "$dir/m" "$dir/c_span.f32"

/usr/bin/python3 - "$dir/m/config.json" "$dir/two.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["layers"] = ["memory", "dense", "memory", "moe", "dense"]; c["n_layers"] = 5
c["memory"]["skip"] = 2; c["infini_rule"] = "delta"
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$US_BIN" init-model --config "$dir/two.json" --out "$dir/two" --seed 4 --store "$dir/two_s2" \
  --shards 2 --store-dtype f32 >/dev/null
$MPIRUN -n 3 "$tool" "$dir/two" "$dir/tok.i32" "$dir/c2.f32" decode "$dir/two_s2" mpi auto
echo -n "two memory tables, decode, 3 ranks: "; check "$dir/two" "$dir/c2.f32"

# the model variants combined (RoPE, 2 Tucker cores = twice the lookup pairs
# and groups, L2 query norm, output gate), two memory tables, in 3 ranks
/usr/bin/python3 - "$dir/two.json" "$dir/var.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["rope_theta"] = 500.0
c["memory"].update(tucker_cores=2, query_norm="l2", output_gate=True)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$US_BIN" init-model --config "$dir/var.json" --out "$dir/var" --seed 5 --store "$dir/var_s2" \
  --shards 2 --store-dtype f32 >/dev/null
$MPIRUN -n 3 "$tool" "$dir/var" "$dir/tok.i32" "$dir/cv.f32" span "$dir/var_s2" mpi auto
echo -n "variants combined, span, 3 ranks: "; check "$dir/var" "$dir/cv.f32"

# 3-shard store in a 3-rank job (2 shard ranks): refused, naming both counts
set +e
out=$($MPIRUN -n 3 "$tool" "$dir/m" "$dir/tok.i32" "$dir/bad.f32" prefill "$dir/s3" mpi auto 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] || { echo "FAIL: shard count mismatch accepted"; exit 1; }
grep -q "has 3 shards but this job has 2 shard ranks" <<<"$out" \
  || { echo "FAIL: unclear mismatch message: $out"; exit 1; }
echo "model_dist ok"
