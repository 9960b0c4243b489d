#!/usr/bin/env bash
# The PyTorch twin (python/ultrashard) gives the C model's logits: for every
# layer kind and model variant (tiny preset = dense + memory + MoE, both
# Infini-attention rules; pkm scoring; TDQKR with rank 1 and with 2 cores;
# query_norm none and l2; RoPE; the Memory+ output gate; configs combining
# them, one with two memory layers in flight at once), models made by
# `ultrashard init-model` are run by C (build/tools/model_logits) and loaded
# by the twin (ultrashard.io.load_model) over 60 tokens = 3.75 segments, fed
# to the twin in one call, in chunks of 7 and in a batch of two: max |diff| <=
# 1e-4 * max |logit|. Also: the combined model with its values on a 3-shard
# store under mpirun -n 4; twin-written models (ultrashard.io.save_model)
# loaded by C; autograd = finite differences; the PKM converter against a
# PKM module written in torch (XLM and Memory+ layouts) and a refusal; the
# twin's config reader against C's on edited configs. The check must FAIL
# when the twin drops RoPE, swaps pkm/tdqkr, drops a core, the output gate or
# the l2 query norm (proof that each variant reaches the logits).
# Python runs in few processes (torch takes seconds to import on a busy box).
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy, torch' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 cannot import torch (deploy/setup installs python3-torch)"; exit 77; }
tool="$B/tools/model_logits"
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
eq="/usr/bin/python3 tests/tools/torch_equiv.py"
pk="/usr/bin/python3 tests/tools/pkm_check.py"
convert="env PYTHONPATH=python /usr/bin/python3 -m ultrashard.convert"
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
$eq tokens "$dir/tok.i32" 60 3
"$US_BIN" init-model --preset tiny --out "$dir/tiny" --seed 7 >/dev/null

# edit_cfg OUT.json 'python statements on c (the tiny config dict), m = c["memory"]'
edit_cfg() {
  /usr/bin/python3 - "$dir/tiny/config.json" "$1" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); m = c["memory"]
exec(sys.argv[3])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
}
# variant NAME EDIT [init-model options]: the model NAME from the edited config
variant() {
  edit_cfg "$dir/$1.json" "$2"
  "$US_BIN" init-model --config "$dir/$1.json" --out "$dir/$1" --seed 5 "${@:3}" >/dev/null
}
# want NAME MODE [K=V ...]: C logits of model NAME fed as MODE, queued for the twin
want() {
  "$tool" "$dir/$1" "$dir/tok.i32" "$dir/$1.$2.f32" "$2"
  echo "$1/$2 $dir/$1 $dir/$1.$2.f32 ${*:3}" >>"$dir/list"
}

variant linear 'c["infini_rule"] = "linear"'
variant pkm 'm["score"] = "pkm"; m["tucker_rank"] = 1'
variant r1 'm["tucker_rank"] = 1'
variant tdqkr2 'm["tucker_cores"] = 2'
variant qn_none 'm["query_norm"] = "none"'
variant qn_l2 'm["query_norm"] = "l2"'
variant rope 'c["rope_theta"] = 10000.0'
variant gate 'm["output_gate"] = True'
variant all 'c["rope_theta"] = 500.0; m["tucker_cores"] = 2; m["query_norm"] = "l2"
m["output_gate"] = True; m["skip"] = 2; c["layers"] = ["memory", "dense", "memory", "moe", "dense"]
c["n_layers"] = 5' --store "$dir/s3" --shards 3 --store-dtype f32
variant all_pkm 'c["rope_theta"] = 10000.0; m["score"] = "pkm"; m["tucker_rank"] = 1
m["query_norm"] = "l2"; m["output_gate"] = True; c["infini_rule"] = "linear"'
$eq save "$dir/tiny/config.json" "$dir/py_tiny" 11 "$dir/all.json" "$dir/py_all" 11

want tiny prefill; want tiny decode; want linear span; want pkm prefill; want r1 prefill
want tdqkr2 prefill; want qn_none prefill; want qn_l2 prefill; want rope prefill
want rope decode; want gate prefill; want all batch; want all_pkm prefill
want py_tiny prefill; want py_all prefill
# the combined model with its values served by 3 shard ranks
$MPIRUN -n 4 "$tool" "$dir/all" "$dir/tok.i32" "$dir/all_mpi.f32" span "$dir/s3" mpi auto
echo "all/4-ranks-3-shard-store $dir/all $dir/all_mpi.f32" >>"$dir/list"
# each variant must reach the logits: the twin with it switched must fail
want rope prefill rope_theta=0
want pkm prefill memory.score=tdqkr
want r1 prefill memory.score=pkm
want tdqkr2 prefill memory.tucker_cores=1
want gate prefill memory.output_gate=false
want qn_l2 prefill memory.query_norm=layernorm
$eq batch "$dir/list" "$dir/tok.i32"

# the twin is differentiable: autograd gradients = finite differences (f64)
echo -n "gradients: "; $eq grad "$dir/all"

# PKM converter: PKM layers built in torch (tests/tools/pkm_check.py)
# converted into layer 1 of the tiny model; C's logits of the result = the
# twin running the PKM module itself there
$pk make "$dir" 1
for kind in xlm memplus; do
  $convert --pkm "$dir/$kind.pt" --prefix mem. --model-dir "$dir/tiny" --layer 1 --knn 4 \
    --skip 0 --out "$dir/conv_$kind"
  "$tool" "$dir/conv_$kind" "$dir/tok.i32" "$dir/conv_$kind.f32" prefill
done
$pk check "$dir/tok.i32" 1 4 xlm "$dir/conv_xlm" "$dir/xlm.pt" "$dir/conv_xlm.f32" \
  memplus "$dir/conv_memplus" "$dir/memplus.pt" "$dir/conv_memplus.f32"
if $convert --pkm "$dir/xlm-bias.pt" --prefix mem. --model-dir "$dir/tiny" --layer 1 --knn 4 \
     --out "$dir/conv_xb" 2>"$dir/xb.err"; then
  echo "FAIL: a query with a bias was converted"; exit 1
fi
grep -q "non-zero bias" "$dir/xb.err" || { echo "FAIL: unclear refusal: $(cat "$dir/xb.err")"; exit 1; }
echo "refused: $(cat "$dir/xb.err")"

# the twin's config reader accepts and refuses what C's does
n_cfg=0; n_bad=0
while IFS= read -r edit; do
  n_cfg=$((n_cfg + 1))
  edit_cfg "$dir/cfg$n_cfg.json" "$edit"
  c_bad=0
  "$US_BIN" init-model --config "$dir/cfg$n_cfg.json" --out "$dir/cfg_m" --seed 1 \
    >/dev/null 2>&1 </dev/null || c_bad=1
  echo "$dir/cfg$n_cfg.json $c_bad" >>"$dir/cfg_list"
  rm -rf "$dir/cfg_m"; n_bad=$((n_bad + c_bad))
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
$eq config "$dir/cfg_list"
echo "config reader agrees with C on $n_cfg edited configs ($n_bad refused by both)"
echo "torch twin equivalence ok"
