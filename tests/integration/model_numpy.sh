#!/usr/bin/env bash
# C model forward vs the independent numpy reference (tests/ref/model.py):
# tiny preset (dense + memory + MoE layers), 44 tokens = 3 segments of 16
# (the last partial), logits within 1e-4 absolute, fed five ways (segment
# prefill, token-by-token decode, chunks of 3 batched with other sequences,
# all 44 tokens in one step, chunks of 1.5 segments batched with sequences
# taking 2.5 segments and 1 token: chunks crossing segment boundaries),
# for both Infini-attention update rules, and for config variants (raw
# memory weights, skip 0, skip past the last layer, no query LayerNorm). Then the same check must FAIL when
# the reference drops the memory layer, the Infini memory or the MoE layer
# (proof that each component reaches the logits).
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
for part in memory infini moe; do
  if US_REF_ABLATE=$part /usr/bin/python3 tests/ref/model.py check "$dir/m" "$dir/tok.i32" \
       "$dir/c_prefill.f32" 1e-4 >"$dir/ablate.log"; then
    echo "FAIL: logits do not depend on the $part component"; exit 1
  fi
  echo "without $part: $(head -1 "$dir/ablate.log" | sed 's/.*max abs err/max abs err/')"
done
echo "model numpy reference ok"
