#!/usr/bin/env bash
# plan.sh — `ultrashard plan` end to end: hand-checked bytes per token on the
# small case of tests/unit/test_plan.c through the CLI and its JSON lines,
# a planned 1e11-value table, and usage errors (exit 2, message names the option).
set -euo pipefail
: "${US_BIN:?}"
out=$("$US_BIN" plan --json --values 1e6 --dim 64 --dtype f32 --layers 1 --heads 1 --k 4 \
      --batch 1 --block-bits 10 --shards 2 --nic-gbit 8 --nic-latency-us 10 --msg-us 1 \
      --row-ns 100 --gather-gbs 1 --cores 1)
/usr/bin/python3 - "$out" <<'PY'
import json, math, sys
rows = {(r["placement"], r["mode"]): r for r in map(json.loads, sys.argv[1].splitlines())}
assert len(rows) == 4, rows.keys()
want = {("row", "push"): (176, 576), ("row", "pull"): (128, 1120),
        ("column", "push"): (256, 352), ("column", "pull"): (160, 1120)}
for key, (req, resp) in want.items():
    r = rows[key]
    assert r["shards"] == 2 and r["limit"] == "fixed", r
    assert math.isclose(r["request_bytes_per_token"], req), (key, r["request_bytes_per_token"])
    assert math.isclose(r["response_bytes_per_token"], resp), (key, r["response_bytes_per_token"])
    assert r["messages_per_token"] == 4, r
rp = rows[("row", "push")]
assert math.isclose(rp["round_latency_us"], 26.5368, rel_tol=1e-5), rp["round_latency_us"]
print("plan small case ok")
PY
# A large table: row placement is planned by memory; every row fits its node.
out=$("$US_BIN" plan --json --values 1e11 --dim 512 --dtype bf16 --node-memory 512G \
      --target-tokens-per-s 1e4)
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = {(r["placement"], r["mode"]): r for r in map(json.loads, sys.argv[1].splitlines())}
r = rows[("row", "push")]
# 1e11 * 1024 B = 1.024e14 B over 384 GiB usable per node: at least 249 shards
assert r["limit"] == "memory" and 249 <= r["shards"] <= 262, r
assert r["node_memory_used_bytes"] <= 0.75 * 512 * 2**30, r
print("plan 1e11 ok:", r["shards"], "shards")
PY
"$US_BIN" plan | grep -q "fewest shards"
set +e
msg=$("$US_BIN" plan --k 0 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q -- "--k" <<<"$msg" || { echo "bad --k: rc=$rc $msg"; exit 1; }
echo "plan cli ok"
