#!/usr/bin/env bash
# The committed demo model (deploy/demo-model) and `make demo`:
# - deploy/demo.sh runs (store of 3 shards, mpirun -n 4 infer) and prints only
#   printable ASCII and newlines, with a non-empty continuation for every prompt;
# - the model is better than chance: `ultrashard eval` on the held-out split of
#   the fortunes text (python/train/data.py) gives bits per byte < 4 (uniform
#   over 256 bytes is 8; skipped without the fortunes package or eval command);
# - a damaged value table changes the output (the demo really reads the store).
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
cd "$(dirname "$0")/../.."
M=deploy/demo-model
[ -f "$M/config.json" ] && [ -f "$M/values/table_0.npy" ] || fail "no demo model in $M"
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
B=${B:-build} US_DEMO_DIR="$dir/demo" MPIRUN="$MPIRUN" bash deploy/demo.sh >"$dir/demo.txt" 2>&1 \
  || { cat "$dir/demo.txt"; fail "deploy/demo.sh"; }
sed -n '/demo 3\/3/,$p' "$dir/demo.txt" | tail -n +2 >"$dir/shown.txt"
[ -s "$dir/shown.txt" ] || fail "demo printed no continuations"
if LC_ALL=C grep -n '[^ -~]' "$dir/shown.txt"; then fail "non-printable bytes in the demo output"; fi
n=$(grep -c '^--- ' "$dir/shown.txt")
[ "$n" -eq 6 ] || fail "want 6 prompts shown, got $n"
/usr/bin/python3 - "$dir/demo/prompts.jsonl" "$dir/shown.txt" <<'PY' || fail "empty continuation"
import json, sys
prompts = [json.loads(l)["prompt"] for l in open(sys.argv[1])]
blocks = open(sys.argv[2]).read().split("--- ")[1:]
for p, b in zip(prompts, blocks):
    body = b.split("\n", 1)[1]
    assert body.startswith(p), (p, body[:80])
    cont = body[len(p):].strip()
    assert len(cont) >= 3, f"prompt {p!r}: continuation {cont!r}"
print(f"ok  {len(blocks)} continuations, shortest {min(len(b) for b in blocks)} chars")
PY
echo "ok  make demo output is plain text"; head -12 "$dir/shown.txt"

# the values matter: a store of zeroed values gives another continuation
/usr/bin/python3 -c "
import numpy as np, sys
v = np.load('$M/values/table_0.npy'); np.save('$dir/zero.npy', np.zeros_like(v))"
"$US_BIN" import --out "$dir/zstore" --table table_0="$dir/zero.npy" --shards 3 --block-bits 8 >/dev/null 2>&1 \
  || fail "import of zeroed table"
$MPIRUN -n 4 "$US_BIN" infer --model "$M" --store "$dir/zstore" --quiet --batch 6 \
  --input "$dir/demo/prompts.jsonl" --output "$dir/zero.jsonl" --temperature 0.8 --top-p 0.9 \
  --seed 7 >/dev/null || fail "infer with the zeroed store"
cmp -s "$dir/zero.jsonl" "$dir/demo/out.jsonl" && fail "zeroed memory values gave the same output"
echo "ok  zeroed memory values change the output"

if ! "$US_BIN" eval --help >/dev/null 2>&1; then echo "skip: no ultrashard eval command"; exit 0; fi
[ -d /usr/share/games/fortunes ] || { echo "skip: package fortunes not installed"; exit 0; }
/usr/bin/python3 python/train/data.py --out "$dir/data" >/dev/null || fail "data.py"
"$US_BIN" eval --model "$M" --text "$dir/data/heldout.txt" --json >"$dir/eval.json" 2>"$dir/eval.err" \
  || { cat "$dir/eval.err"; fail "ultrashard eval"; }
/usr/bin/python3 - "$dir/eval.json" <<'PY' || fail "held-out bits per byte"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
bpb = r["bits_per_byte"]
print(f"held-out bits per byte {bpb:.3f} (uniform 8)")
assert 0 < bpb < 4, bpb
PY
echo "ok  held-out bits per byte < 4"
