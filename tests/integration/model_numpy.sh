#!/usr/bin/env bash
# C model forward vs the independent numpy reference (tests/ref/model.py):
# tiny preset (dense + memory + MoE layers), 44 tokens = 3 segments of 16
# (the last partial), logits within 1e-4 absolute, fed five ways (segment
# prefill, token-by-token decode, chunks of 3 batched with other sequences,
# all 44 tokens in one step, chunks of 1.5 segments batched with sequences
# taking 2.5 segments and 1 token: chunks crossing segment boundaries),
# for both Infini-attention update rules, and for config variants (raw
# memory weights, skip 0, skip past the last layer, no query LayerNorm), and
# for the model variants (pkm, tdqkr with 2 cores, query_norm none / l2,
# RoPE, output gate, two combinations). Then the same check must FAIL when
# the reference drops the memory layer, the Infini memory, the MoE layer,
# RoPE, the output gate, the per-core weights of MCS, or scores pkm/tdqkr with the other rule (proof that
# each component reaches the logits).
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 with numpy not available"; exit 77; }
tool="$B/tools/model_logits"
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 7
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(3)
np.concatenate([[256], rng.integers(0, 256, 43)]).astype('<i4').tofile('$dir/tok.i32')"
for rule in delta linear; do
  /usr/bin/python3 - "$dir/m/config.json" "$rule" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["infini_rule"] = sys.argv[2]
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
  for mode in prefill decode batch whole span; do
    "$tool" "$dir/m" "$dir/tok.i32" "$dir/c_$mode.f32" "$mode"
    echo -n "$rule $mode: "
    /usr/bin/python3 tests/ref/model.py check "$dir/m" "$dir/tok.i32" "$dir/c_$mode.f32" 1e-4
  done
done
# config variants on the same weights: raw memory weights (no softmax), the
# memory output added at its own layer (skip 0) and past the end (skip 5 ->
# clipped to the last layer)
for variant in weights=raw skip=0 skip=5 query_norm=false; do
  cp "$dir/m/config.json" "$dir/config.keep"
  /usr/bin/python3 - "$dir/m/config.json" "$variant" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); k, v = sys.argv[2].split("=")
c["memory"][k] = int(v) if v.isdigit() else {"false": False, "true": True}.get(v, v)
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
  "$tool" "$dir/m" "$dir/tok.i32" "$dir/c_var.f32" prefill
  echo -n "$variant: "
  /usr/bin/python3 tests/ref/model.py check "$dir/m" "$dir/tok.i32" "$dir/c_var.f32" 1e-4
  cp "$dir/config.keep" "$dir/m/config.json"
done
# a model from a config file: two memory layers (tables 0 and 1) with skip 2,
# so both lookups are in flight at once, and 5 layers
/usr/bin/python3 - "$dir/m/config.json" "$dir/two.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["layers"] = ["memory", "dense", "memory", "moe", "dense"]; c["n_layers"] = 5
c["memory"]["skip"] = 2; c["infini_rule"] = "delta"
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$US_BIN" init-model --config "$dir/two.json" --out "$dir/two" --seed 4
"$tool" "$dir/two" "$dir/tok.i32" "$dir/c_two.f32" batch
echo -n "two memory layers: "
/usr/bin/python3 tests/ref/model.py check "$dir/two" "$dir/tok.i32" "$dir/c_two.f32" 1e-4
# the model variants (coordinator/model/model_config.h, SPEC-model-variants.md):
# each a model of its own (init-model from an edited config: pkm has no core,
# 2 cores double the core tensor, the output gate adds two weights), checked
# in three feeding modes; RoPE (positions inside the segment) in all five,
# as the KV cache holds rotated and unrotated keys.
variant_config() {   # $1 = name, $2 = output config path
  /usr/bin/python3 - "$dir/m/config.json" "$1" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); m = c["memory"]; name = sys.argv[2]
c["infini_rule"] = "delta"
if name == "pkm":        m.update(score="pkm", tucker_rank=1, tucker_cores=1)
elif name == "cores2":   m.update(score="tdqkr", tucker_cores=2)
elif name == "qn_none":  m.update(query_norm="none")
elif name == "qn_l2":    m.update(query_norm="l2")
elif name == "rope":     c["rope_theta"] = 10000.0
elif name == "gate":     m.update(output_gate=True)
elif name == "combined":
    c["rope_theta"] = 500.0
    m.update(score="tdqkr", tucker_cores=2, query_norm="l2", output_gate=True)
    c["layers"] = ["memory", "dense", "memory", "moe"]; m["skip"] = 2
elif name == "pkm_combined":
    c["rope_theta"] = 10000.0
    m.update(score="pkm", tucker_rank=1, tucker_cores=1, query_norm="none",
             output_gate=True, weights="raw")
json.dump(c, open(sys.argv[3], "w"), indent=1)
PY
}
for variant in pkm cores2 qn_none qn_l2 rope gate combined pkm_combined; do
  variant_config $variant "$dir/$variant.json"
  "$US_BIN" init-model --config "$dir/$variant.json" --out "$dir/$variant" --seed 11 >/dev/null
  modes="prefill decode span"
  [ $variant = rope ] && modes="prefill decode batch whole span"
  for mode in $modes; do
    "$tool" "$dir/$variant" "$dir/tok.i32" "$dir/c_$variant.$mode.f32" $mode
    echo -n "variant $variant $mode: "
    /usr/bin/python3 tests/ref/model.py check "$dir/$variant" "$dir/tok.i32" \
      "$dir/c_$variant.$mode.f32" 1e-4
  done
done
ablate() {   # $1 = component, $2 = model dir, $3 = C logits
  if US_REF_ABLATE=$1 /usr/bin/python3 tests/ref/model.py check "$2" "$dir/tok.i32" \
       "$3" 1e-4 >"$dir/ablate.log"; then
    echo "FAIL: logits of $2 do not depend on the $1 component"; exit 1
  fi
  echo "without $1 ($(basename "$2")): $(head -1 "$dir/ablate.log" | sed 's/.*max abs err/max abs err/')"
}
for part in memory infini moe; do
  ablate $part "$dir/m" "$dir/c_prefill.f32"
done
ablate rope "$dir/rope" "$dir/c_rope.prefill.f32"
ablate score "$dir/pkm" "$dir/c_pkm.prefill.f32"
ablate score "$dir/cores2" "$dir/c_cores2.prefill.f32"
ablate cores "$dir/cores2" "$dir/c_cores2.prefill.f32"
ablate gate "$dir/gate" "$dir/c_gate.prefill.f32"
echo "model numpy reference ok"
