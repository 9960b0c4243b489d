#!/usr/bin/env bash
# deploy/supervise.sh keeps `ultrashard serve` up: under the supervisor
# (mpirun: 1 coordinator + 3 shards), kill -9 of a shard rank ends the job,
# the supervisor restarts it (logged), and a Python client that was connected
# before the kill gets a correct Lookup afterwards from the new job (it
# reconnects and retries by itself; Stats uptime shows a new job). SIGTERM to
# the supervisor then stops the service: exit 0, no restart. No timing is
# asserted (tests/bench/serve_restart.sh measures it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/tools/serve_env.bash
"$US_BIN" serve --help >/dev/null 2>&1 || { echo "skip: this ultrashard has no serve command"; exit 77; }
"$SERVE_PY" -c 'import google.protobuf, numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 lacks google.protobuf or numpy"; exit 77; }
dir=$(mktemp -d)
sup=""
cleanup() { [ -z "$sup" ] || kill -TERM "$sup" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
serve_model "$dir"
port=$(serve_free_port)
SERVE_MPIRUN_EXTRA="--mca odls_base_sigkill_timeout 0"
serve_cmd "$dir" "$port"
deploy/supervise.sh --term-children --log "$dir/sup.log" --backoff-min 0.1 -- "${SERVE_CMD[@]}" \
  >"$dir/serve.out" 2>"$dir/serve.err" &
sup=$!
serve_wait "$port" || { tail "$dir/serve.err" "$dir/sup.log"; exit 1; }
sleep 0.5
victim=$(serve_rank_pid 2)
[ -n "$victim" ] || { echo "FAIL: shard rank 2 not found"; exit 1; }
"$SERVE_PY" - "$port" "$victim" "$dir/m/values/table_0.npy" <<'PY'
import os, signal, sys, time
import numpy as np
from ultrashard_client import Client
port, victim, values = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
table = np.load(values)
rows = np.arange(table.shape[0]).reshape(-1, 4)          # every row, so every shard
w = np.full(rows.shape, 0.25, dtype=np.float32)
want = np.einsum("tk,tkd->td", w.astype(np.float64), table[rows].astype(np.float64))
c = Client("127.0.0.1", port, timeout=5, max_retries=60, backoff_max=1.0)
err = lambda got: np.abs(got - want).max() / np.abs(want).max()
assert err(c.lookup("table_0", rows, w)) < 1e-5
t_kill = time.monotonic()
os.kill(victim, signal.SIGKILL)
got = c.lookup("table_0", rows, w)          # rides over the restart
since = time.monotonic() - t_kill
uptime = c.stats().uptime_ms / 1e3
assert err(got) < 1e-5, err(got)
assert c.reconnects >= 1, c.reconnects
assert uptime < since, (uptime, since)     # answered by the new job
print("after kill -9 of rank 2 (pid %d): correct lookup from a new job (uptime %.2f s), "
      "%d reconnects" % (victim, uptime, c.reconnects))
PY
grep -q 'restart in' "$dir/sup.log" || { echo "FAIL: no restart logged"; cat "$dir/sup.log"; exit 1; }
rc=0; serve_stop "$sup" || rc=$?
sup=""
cat "$dir/sup.log"
[ "$rc" -eq 0 ] || { echo "FAIL: supervisor exited $rc after SIGTERM"; exit 1; }
grep -q 'stopped' "$dir/sup.log" || { echo "FAIL: no clean stop logged"; exit 1; }
[ "$(grep -c ' start #' "$dir/sup.log")" -eq 2 ] || { echo "FAIL: want exactly 2 starts"; exit 1; }
echo "serve_supervise ok"
