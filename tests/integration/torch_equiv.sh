#!/usr/bin/env bash
# The PyTorch twin (python/ultrashard) gives the C model's logits: for every
# layer kind and model variant (tiny preset = dense + memory + MoE, both
# Infini-attention rules; pkm scoring; TDQKR with 2 cores; query_norm none and
# l2; RoPE; the Memory+ output gate; one config combining them with two memory
# layers in flight at once), models made by `ultrashard init-model` are run
# by C (build/tools/model_logits) and loaded by the twin (ultrashard.io.
# load_model) over 60 tokens = 3.75 segments, fed to the twin in one call, in
# chunks of 7 and in a batch of two: max |diff| <= 1e-4 * max |logit|. Also:
# the combined model with its values on a 3-shard store under mpirun -n 4;
# twin-written models (ultrashard.io.save_model) loaded by C. Then the check
# must FAIL when the twin drops RoPE, swaps pkm/tdqkr, drops a core, the
# output gate or the l2 query norm (proof that each variant reaches the logits).
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy, torch' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 cannot import torch (deploy/setup installs python3-torch)"; exit 77; }
tool="$B/tools/model_logits"
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
eq="/usr/bin/python3 tests/tools/torch_equiv.py"
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
$eq tokens "$dir/tok.i32" 60 3
"$US_BIN" init-model --preset tiny --out "$dir/tiny" --seed 7 >/dev/null

# variant NAME 'python statements on c (the tiny config dict)'
variant() {
  /usr/bin/python3 - "$dir/tiny/config.json" "$dir/$1.json" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); m = c["memory"]
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
  "$US_BIN" init-model --config "$dir/$1.json" --out "$dir/$1" --seed 5 "${@:3}" >/dev/null
}
check() {   # check NAME MODE [twin check options]
  "$tool" "$dir/$1" "$dir/tok.i32" "$dir/$1.f32" "$2"
  echo -n "$1 ($2): "; $eq check "$dir/$1" "$dir/tok.i32" "$dir/$1.f32" "${@:3}"
}

check tiny prefill
check tiny decode
variant linear 'c["infini_rule"] = "linear"'
check linear span
variant pkm 'm["score"] = "pkm"; m["tucker_rank"] = 1'
check pkm prefill
variant tdqkr2 'm["tucker_cores"] = 2'
check tdqkr2 prefill
variant qn_none 'm["query_norm"] = "none"'
check qn_none prefill
variant qn_l2 'm["query_norm"] = "l2"'
check qn_l2 prefill
variant rope 'c["rope_theta"] = 10000.0'
check rope prefill
check rope decode
variant gate 'm["output_gate"] = True'
variant r1 'm["tucker_rank"] = 1'
check r1 prefill
check gate prefill
ALL='c["rope_theta"] = 500.0; m["tucker_cores"] = 2; m["query_norm"] = "l2"
m["output_gate"] = True; m["skip"] = 2; c["layers"] = ["memory", "dense", "memory", "moe", "dense"]
c["n_layers"] = 5'
variant all "$ALL" --store "$dir/s3" --shards 3 --store-dtype f32
check all batch
variant all_pkm 'c["rope_theta"] = 10000.0; m["score"] = "pkm"; m["tucker_rank"] = 1
m["query_norm"] = "l2"; m["output_gate"] = True; c["infini_rule"] = "linear"'
check all_pkm prefill

# the combined model with its values served by 3 shard ranks
$MPIRUN -n 4 "$tool" "$dir/all" "$dir/tok.i32" "$dir/all_mpi.f32" span "$dir/s3" mpi auto
echo -n "all, 4 ranks, 3-shard store: "
$eq check "$dir/all" "$dir/tok.i32" "$dir/all_mpi.f32"

# twin-written models, loaded by C
$eq save "$dir/tiny/config.json" "$dir/py_tiny" 11
check py_tiny prefill
$eq save "$dir/all.json" "$dir/py_all" 11
check py_all prefill

# the twin is differentiable: autograd gradients = finite differences (f64)
echo -n "gradients: "; $eq grad "$dir/all"

# PKM converter: a PKM layer built in torch (XLM and Memory+ layouts,
# tests/tools/pkm_check.py) converted into layer 1 of the tiny model; C's
# logits of the result = the twin running the PKM module itself there
pk="/usr/bin/python3 tests/tools/pkm_check.py"
for kind in xlm memplus; do
  $pk make "$dir/$kind.pt" $kind 1
  PYTHONPATH=python /usr/bin/python3 -m ultrashard.convert --pkm "$dir/$kind.pt" --prefix mem. \
    --model-dir "$dir/tiny" --layer 1 --knn 4 --skip 0 --out "$dir/conv_$kind"
  "$tool" "$dir/conv_$kind" "$dir/tok.i32" "$dir/conv_$kind.f32" prefill
  $pk check "$dir/conv_$kind" "$dir/$kind.pt" $kind 1 "$dir/tok.i32" "$dir/conv_$kind.f32" 4
  $pk check "$dir/conv_$kind" "$dir/$kind.pt" $kind 1 "$dir/tok.i32" "$dir/conv_$kind.f32" 4 --swap
done
$pk make "$dir/xb.pt" xlm-bias 1
if PYTHONPATH=python /usr/bin/python3 -m ultrashard.convert --pkm "$dir/xb.pt" --prefix mem. \
     --model-dir "$dir/tiny" --layer 1 --knn 4 --out "$dir/conv_xb" 2>"$dir/xb.err"; then
  echo "FAIL: a query with a bias was converted"; exit 1
fi
grep -q "non-zero bias" "$dir/xb.err" || { echo "FAIL: unclear refusal: $(cat "$dir/xb.err")"; exit 1; }
echo "refused: $(cat "$dir/xb.err")"

# each variant must reach the logits: the twin with it switched off must fail
check rope prefill --mutate rope_theta=0
check pkm prefill --mutate memory.score=tdqkr
check r1 prefill --mutate memory.score=pkm
check tdqkr2 prefill --mutate memory.tucker_cores=1
check gate prefill --mutate memory.output_gate=false
check qn_l2 prefill --mutate memory.query_norm=layernorm

# the twin's config reader accepts and refuses what C's does
n_cfg=0; n_bad=0
while IFS= read -r edit; do
  /usr/bin/python3 - "$dir/tiny/config.json" "$dir/cfg.json" "$edit" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); m = c["memory"]
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"))
PY
  c_ok=0; py_ok=0
  "$US_BIN" init-model --config "$dir/cfg.json" --out "$dir/cfg_m" --seed 1 >/dev/null 2>&1 || c_ok=1
  $eq config "$dir/cfg.json" >"$dir/cfg.err" || py_ok=1
  [ $c_ok = $py_ok ] || { echo "FAIL: C and twin disagree on: $edit ($(cat "$dir/cfg.err"))"; exit 1; }
  rm -rf "$dir/cfg_m"; n_cfg=$((n_cfg + 1)); n_bad=$((n_bad + c_ok))
done <<'EDITS'
c["rope_theta"] = -1.0
c["rope_theta"] = 100.0; c["head_dim"] = 31
c["rope_theta"] = 1e31
m["score"] = "pkm"
m["score"] = "pkm"; m["tucker_rank"] = 1; m["tucker_cores"] = 2
m["score"] = "sum"
m["tucker_cores"] = 3
m["tucker_cores"] = 17
m["tucker_cores"] = 2; m["v_dim"] = 64; m["ive_groups"] = 128; m["n_keys"] = 32; m["candidates"] = 4
m["query_norm"] = "l3"
m["query_norm"] = 1
m["query_norm"] = False
del m["query_norm"]
m["output_gate"] = 1
m["output_gate"] = False
m["candidates"] = 17
m["knn"] = 17
m["ive_groups"] = 3
c["moe"]["top_k"] = 5
c["norm_eps"] = 1e-60
c["n_layers"] = 3
c["layers"][0] = "ffn"
c["version"] = 2
del c["segment_len"]
EDITS
echo "config reader agrees with C on $n_cfg edited configs ($n_bad refused by both)"
echo "torch twin equivalence ok"
