#!/usr/bin/env bash
# `ultrashard serve --coordinators 2` under mpirun -n 4 (2 coordinators on
# PORT and PORT+1, 2 shards serving the store to both): each coordinator
# prints its own serve_listening line; the same greedy prompts sent to both
# at once give exactly `infer`'s tokens on each; both answer the same lookup
# with the same bytes; a connection that stays silent past --idle-timeout-s
# gets TIMEOUT and is closed while a busy one is still served; SIGTERM to
# both coordinator ranks drains and the job exits 0.
set -euo pipefail
. "$(dirname "$0")/lib/serve_job.sh"
fail() { echo "FAIL: $*"; [ -f "$dir/serve.err" ] && tail -20 "$dir/serve.err"; exit 1; }
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 5 --store "$dir/s2" --shards 2 >/dev/null

# two adjacent free ports (coordinator c listens on PORT+c)
port=$($PY - <<'PY'
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
PY
)
[ -n "$port" ] || fail "no two adjacent free ports"

$MPIRUN -n 4 "$US_BIN" serve --model "$dir/m" --store "$dir/s2" --coordinators 2 \
  --listen 127.0.0.1:"$port" --idle-timeout-s 2 >"$dir/serve.out" 2>"$dir/serve.err" &
mpirun_pid=$!
for _ in $(seq 1 300); do
  [ "$(grep -c serve_listening "$dir/serve.out" 2>/dev/null)" = 2 ] && break; sleep 0.1
done
[ "$(grep -c serve_listening "$dir/serve.out")" = 2 ] || fail "not two serve_listening lines"
pids=$($PY -c '
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if "serve_listening" in l]
assert sorted(l["coordinator"] for l in ls) == [0, 1], ls
print(" ".join(str(l["pid"]) for l in ls))' "$dir/serve.out") || fail "listening lines"
echo "2 coordinators listening on $port and $((port + 1)) (pids $pids)"

# the same prompts to both coordinators at once == infer (greedy)
for i in 1 2 3; do
  printf '{"id":"p%d","prompt":"prompt %d asks the two coordinators","max_tokens":16}\n' "$i" "$i"
done >"$dir/in.jsonl"
"$US_BIN" infer --model "$dir/m" --store "$dir/s2" --input "$dir/in.jsonl" --output "$dir/ref.jsonl" \
  --quiet >/dev/null
gens=()
for c in 0 1; do
  for i in 1 2 3; do
    "$US_BIN" client --connect 127.0.0.1:$((port + c)) --timeout-ms 60000 generate \
      --prompt "prompt $i asks the two coordinators" --max-tokens 16 \
      >"$dir/g$c$i.out" 2>"$dir/g$c$i.err" &
    gens+=($!)
  done
done
for p in "${gens[@]}"; do wait "$p" || fail "a generate failed"; done
$PY - "$dir" <<'PY' || fail "generate != infer"
import json, sys
d = sys.argv[1]
ref = [json.loads(l) for l in open(f"{d}/ref.jsonl")]
for c in (0, 1):
    for i in (1, 2, 3):
        got = [json.loads(l) for l in open(f"{d}/g{c}{i}.err") if l.startswith("{")][-1]
        assert got["tokens"] == ref[i - 1]["tokens"], (c, i, got["tokens"], ref[i - 1]["tokens"])
print("generate on both coordinators == infer: 2 x 3 prompts x",
      len(ref[0]["tokens"]), "tokens")
PY

# one lookup, both coordinators: same answer bytes
$PY -c '
import numpy as np
np.save("'"$dir"'/ids.npy", np.array([[1, 7, 63, 7], [0, 2, 4, 8]], dtype=np.int64))
np.save("'"$dir"'/w.npy", np.array([[0.5, 1, -2, 0.25], [1, 1, 1, 1]], dtype=np.float32))'
for c in 0 1; do
  "$US_BIN" client --connect 127.0.0.1:$((port + c)) lookup --table table_0 \
    --rows "$dir/ids.npy" --weights "$dir/w.npy" --out "$dir/l$c.npy" >/dev/null 2>"$dir/l$c.err" ||
    { cat "$dir/l$c.err"; fail "lookup on coordinator $c"; }
done
cmp "$dir/l0.npy" "$dir/l1.npy" || fail "the two coordinators' lookups differ"
echo "lookup: both coordinators answer the same bytes"

# idle timeout: a silent connection gets TIMEOUT and is closed after ~2 s,
# while a client on the same coordinator is served meanwhile
$PY - "$port" "$US_BIN" <<'PY' || fail "idle timeout"
import socket, struct, subprocess, sys, time
port, us_bin = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
t0 = time.time()
subprocess.run([us_bin, "client", "--connect", f"127.0.0.1:{port}", "health"], check=True,
               stdout=subprocess.DEVNULL)
buf = b""
while True:
    c = s.recv(4096)
    if not c:
        break
    buf += c
dt = time.time() - t0
n = struct.unpack("<I", buf[:4])[0]
assert len(buf) == 4 + n, buf
assert b"\x18\x09" in buf[4:] and b"idle" in buf, buf     # status (field 3) = TIMEOUT (9)
assert 1.5 < dt < 8, dt
print(f"idle connection: TIMEOUT and closed after {dt:.1f} s; another client served meanwhile")
PY

for p in $pids; do kill -TERM "$p"; done
rc=0; wait "$mpirun_pid" || rc=$?
mpirun_pid=""
[ "$rc" -eq 0 ] || fail "serve exited $rc after SIGTERM"
echo "serve_multi ok"
