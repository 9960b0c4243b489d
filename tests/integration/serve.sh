#!/usr/bin/env bash
# `ultrashard serve` under mpirun (1 coordinator + 3 shards, tiny model, store)
# and `ultrashard client`: greedy generate equals `infer`; lookup equals the
# numpy gather of values/table_0.npy; a wrong token is refused; a garbage,
# an oversized and a half-sent frame each get their own connection closed
# while a second client is served; /metrics answers; SIGTERM to the
# coordinator answers every accepted request, then the job exits 0.
# Also: a token file readable by others and a non-loopback address without a
# token are refused with clear errors.
set -euo pipefail
. "$(dirname "$0")/lib/serve_job.sh"
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s3" --shards 3 >/dev/null

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
port=$(free_port); mport=$(free_port)
printf 'sekrit-token-%s\n' "$RANDOM$RANDOM" >"$dir/token"; chmod 600 "$dir/token"
printf 'wrong\n' >"$dir/wrong"; chmod 600 "$dir/wrong"

# refusals that need no job
cp "$dir/token" "$dir/open_token"; chmod 644 "$dir/open_token"
if "$US_BIN" serve --model "$dir/m" --listen 127.0.0.1:"$port" --token-file "$dir/open_token" \
    2>"$dir/e1"; then echo "FAIL: served with a 0644 token file"; exit 1; fi
grep -q "chmod 600" "$dir/e1" || { cat "$dir/e1"; echo "FAIL: no mode message"; exit 1; }
if "$US_BIN" serve --model "$dir/m" --listen 0.0.0.0:"$port" 2>"$dir/e2"; then
  echo "FAIL: listened on 0.0.0.0 without a token"; exit 1; fi
grep -q "not a loopback address" "$dir/e2" || { cat "$dir/e2"; echo "FAIL: no loopback message"; exit 1; }
echo "refused: 0644 token file, non-loopback without token"

# one process (values from DIR/values): a client started before the server
# connects once it is up (reconnect with backoff); --max-connections 1: a
# second connection gets BUSY and is closed
port2=$(free_port)
"$US_BIN" client --connect 127.0.0.1:"$port2" health >"$dir/early.out" 2>"$dir/early.err" &
early=$!
sleep 0.2
"$US_BIN" serve --model "$dir/m" --listen 127.0.0.1:"$port2" --max-connections 1 \
  >"$dir/p2.out" 2>"$dir/p2.err" &
p2=$!
wait "$early" || { cat "$dir/early.err"; echo "FAIL: early client did not get through"; exit 1; }
grep -q '"serving":true' "$dir/early.out"
$PY - "$port2" <<'EOF2'
import socket, struct, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port)); time.sleep(0.3)
b = socket.create_connection(("127.0.0.1", port)); b.settimeout(10)
buf = b""
while True:
    c = b.recv(4096)
    if not c: break
    buf += c
n = struct.unpack("<I", buf[:4])[0]
assert len(buf) == 4 + n and b"\x18\x03" in buf[4:], buf   # status (field 3) = BUSY (3)
print("early client reconnected after the server came up; connection over --max-connections 1: BUSY, closed")
EOF2
kill -TERM "$p2"; wait "$p2"

$MPIRUN -n 4 "$US_BIN" serve --model "$dir/m" --store "$dir/s3" --listen 127.0.0.1:"$port" \
  --token-file "$dir/token" --metrics 127.0.0.1:"$mport" --frame-timeout-ms 1500 \
  >"$dir/serve.out" 2>"$dir/serve.err" &
mpirun_pid=$!
for _ in $(seq 1 300); do grep -q serve_listening "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
grep -q serve_listening "$dir/serve.out" || { cat "$dir/serve.err"; echo "FAIL: serve did not start"; exit 1; }
coord_pid=$($PY -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["pid"])' "$dir/serve.out")
cli=("$US_BIN" client --connect 127.0.0.1:"$port" --token-file "$dir/token" --timeout-ms 60000)

# generate (greedy) == infer
prompt="prompt number 1: the memory layer"
printf '{"id":"p01","prompt":"%s","max_tokens":12}\n' "$prompt" >"$dir/in.jsonl"
"$US_BIN" infer --model "$dir/m" --store "$dir/s3" --input "$dir/in.jsonl" --output "$dir/ref.jsonl" --quiet >/dev/null
"${cli[@]}" generate --prompt "$prompt" --max-tokens 12 >"$dir/gen.txt" 2>"$dir/gen.err"
$PY - "$dir/ref.jsonl" "$dir/gen.err" <<'EOF'
import json, sys
ref = json.loads(open(sys.argv[1]).readline())
got = [json.loads(l) for l in open(sys.argv[2]) if l.startswith('{')][-1]
assert got["tokens"] == ref["tokens"], (got["tokens"], ref["tokens"])
assert got["finish"] == ref["finish"] and got["prompt_tokens"] == ref["prompt_tokens"], (got, ref)
print("generate == infer:", len(got["tokens"]), "tokens,", got["finish"])
EOF

# lookup == numpy gather (ungrouped and grouped)
$PY - "$dir" <<'EOF'
import numpy as np, sys
d = sys.argv[1]
v = np.load(d + "/m/values/table_0.npy")
rng = np.random.default_rng(7)
T, k = 6, 5
np.save(d + "/rows.npy", rng.integers(0, v.shape[0], (T, k)).astype(np.int64))
np.save(d + "/w.npy", rng.standard_normal((T, k)).astype(np.float32))
np.save(d + "/g.npy", rng.integers(0, 3, (T, k)).astype(np.uint8))
EOF
"${cli[@]}" lookup --table table_0 --rows "$dir/rows.npy" --weights "$dir/w.npy" --out "$dir/o.npy"
"${cli[@]}" lookup --table table_0 --rows "$dir/rows.npy" --weights "$dir/w.npy" \
  --groups "$dir/g.npy" --n-groups 3 --out "$dir/og.npy"
$PY - "$dir" <<'EOF'
import numpy as np, sys
d = sys.argv[1]
v = np.load(d + "/m/values/table_0.npy").astype(np.float64)
r, w, g = np.load(d + "/rows.npy"), np.load(d + "/w.npy").astype(np.float64), np.load(d + "/g.npy")
ref = np.einsum("tk,tkc->tc", w, v[r])
refg = np.zeros((r.shape[0], 3, v.shape[1]))
for t in range(r.shape[0]):
    for i in range(r.shape[1]):
        refg[t, g[t, i]] += w[t, i] * v[r[t, i]]
for name, want in (("o", ref), ("og", refg)):
    got = np.load(d + "/" + name + ".npy")
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want).max() / max(1e-30, np.abs(want).max())
    assert err < 1e-5, (name, err)
print("lookup == numpy gather (ungrouped, 3 groups), rel err < 1e-5")
EOF
if "${cli[@]}" lookup --table table_9 --rows "$dir/rows.npy" --weights "$dir/w.npy" \
    --out "$dir/x.npy" 2>"$dir/nf.err"; then echo "FAIL: unknown table served"; exit 1; fi
grep -q "NOT_FOUND" "$dir/nf.err" || { cat "$dir/nf.err"; exit 1; }

# the remote memory layer: the mpirun job equals one process serving the same store
port1=$(free_port)
"$US_BIN" serve --model "$dir/m" --store "$dir/s3" --listen 127.0.0.1:"$port1" >"$dir/one.out" 2>"$dir/one.err" &
one_pid=$!
$PY -c 'import numpy as np,sys; np.save(sys.argv[1], np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32))' "$dir/h.npy"
"${cli[@]}" memory --table table_0 --queries "$dir/h.npy" --out "$dir/mem_d.npy" >"$dir/mem_d.json"
for _ in $(seq 1 100); do grep -q serve_listening "$dir/one.out" 2>/dev/null && break; sleep 0.1; done
"$US_BIN" client --connect 127.0.0.1:"$port1" memory --table table_0 --queries "$dir/h.npy" \
  --out "$dir/mem_1.npy" >"$dir/mem_1.json"
kill -TERM "$one_pid"; wait "$one_pid"
cmp "$dir/mem_d.json" "$dir/mem_1.json"
$PY - "$dir" <<'EOF2'
import numpy as np, sys
d = sys.argv[1]
a, b = np.load(d + "/mem_d.npy"), np.load(d + "/mem_1.npy")
assert a.shape == (4, 64) and np.abs(a).max() > 0, a.shape
err = np.abs(a - b).max() / np.abs(b).max()
assert err < 1e-5, err
print("memory layer: mpirun job == one process (same selection, rel err %.1e)" % err)
EOF2

# wrong token, no token
if "$US_BIN" client --connect 127.0.0.1:"$port" --token-file "$dir/wrong" health 2>"$dir/wt.err"; then
  echo "FAIL: wrong token accepted"; exit 1; fi
grep -q "UNAUTHENTICATED" "$dir/wt.err" || { cat "$dir/wt.err"; exit 1; }
if "$US_BIN" client --connect 127.0.0.1:"$port" health 2>"$dir/nt.err"; then
  echo "FAIL: no token accepted"; exit 1; fi
grep -q "UNAUTHENTICATED" "$dir/nt.err" || { cat "$dir/nt.err"; exit 1; }
echo "wrong token and missing token refused"

# bad frames on their own connections while another client is served
$PY - "$port" "$dir/token" "$dir" "$US_BIN" <<'EOF'
import socket, struct, subprocess, sys, time
port, token = int(sys.argv[1]), open(sys.argv[2], "rb").read().strip()
d, us_bin = sys.argv[3], sys.argv[4]
def frame(b): return struct.pack("<I", len(b)) + b
def auth():   # Request{version 1, request_id 1, auth{token}}
    a = b"\x0a" + bytes([len(token)]) + token
    return frame(b"\x08\x01\x10\x01" + b"\x52" + bytes([len(a)]) + a)
def status_of(payload):   # field 3 (varint) of a Response; absent = 0 (OK)
    i = 0
    while i < len(payload):
        tag = payload[i]; i += 1
        f, wt = tag >> 3, tag & 7
        if wt == 0:
            v = 0; s = 0
            while True:
                b = payload[i]; i += 1; v |= (b & 0x7f) << s; s += 7
                if b < 0x80: break
            if f == 3: return v
        elif wt == 2:
            n = 0; s = 0
            while True:
                b = payload[i]; i += 1; n |= (b & 0x7f) << s; s += 7
                if b < 0x80: break
            i += n
        else: raise ValueError("wire type %d" % wt)
    return 0
def read_frames(s):   # until the server closes; returns the statuses
    s.settimeout(10); buf = b""
    while True:
        c = s.recv(65536)
        if not c: break
        buf += c
    out = []
    while len(buf) >= 4:
        n = struct.unpack("<I", buf[:4])[0]; out.append(status_of(buf[4:4 + n])); buf = buf[4 + n:]
    return out
def connect():
    s = socket.create_connection(("127.0.0.1", port)); return s
slow = connect(); slow.sendall(auth() + struct.pack("<I", 100) + b"\x08")  # half a frame
garbage = connect(); garbage.sendall(auth() + frame(b"\xff\xff\xff\xff\xff\xff"))
huge = connect(); huge.sendall(auth() + struct.pack("<I", 0x7fffffff))
# a second client, served meanwhile
r = subprocess.run([us_bin, "client", "--connect", "127.0.0.1:%d" % port, "--token-file",
                    sys.argv[2], "lookup", "--table", "table_0", "--rows", d + "/rows.npy",
                    "--weights", d + "/w.npy", "--out", d + "/o2.npy"], capture_output=True)
assert r.returncode == 0, r.stderr
assert open(d + "/o2.npy", "rb").read() == open(d + "/o.npy", "rb").read()
g = read_frames(garbage); h = read_frames(huge); t0 = time.time(); sl = read_frames(slow)
assert g == [0, 1], g      # auth OK, BAD_REQUEST, closed
assert h == [0, 4], h      # auth OK, TOO_LARGE, closed
assert sl == [0, 9], sl    # auth OK, TIMEOUT (frame deadline), closed
print("garbage / oversized / slow frames: BAD_REQUEST / TOO_LARGE / TIMEOUT, own connection "
      "closed; concurrent lookup served identically")
EOF

# metrics
$PY - "$mport" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode()
def val(name):
    for line in body.splitlines():
        if line.startswith(name + " "): return float(line.split()[-1])
    raise KeyError(name)
assert val('ultrashard_requests_total{kind="generate"}') >= 1
assert val('ultrashard_requests_total{kind="lookup"}') >= 3
assert val('ultrashard_responses_total{code="UNAUTHENTICATED"}') >= 2
assert val('ultrashard_frames_bad_total') >= 3
assert val('ultrashard_lookup_round_seconds_count') >= 3
assert 'ultrashard_request_seconds_bucket{kind="lookup",le="+Inf"}' in body
assert val('ultrashard_table_bytes_total{table="table_0",dir="sent"}') > 0
print("metrics ok:", len(body.splitlines()), "lines")
EOF

# SIGTERM: requests accepted before it are all answered, then exit 0
for i in 1 2 3; do
  "${cli[@]}" generate --prompt "drain $i" --max-tokens 40 >"$dir/d$i.out" 2>"$dir/d$i.err" &
  eval "gen_$i=\$!"
done
for _ in $(seq 1 200); do   # wait until all three are accepted
  n=$(curl -s "http://127.0.0.1:$mport/metrics" | awk '$1=="ultrashard_requests_total{kind=\"generate\"}"{print $2}')
  [ "${n:-0}" -ge 4 ] && break; sleep 0.05
done
kill -TERM "$coord_pid"
rc=0; wait "$mpirun_pid" || rc=$?
mpirun_pid=""
[ "$rc" -eq 0 ] || { cat "$dir/serve.err"; echo "FAIL: serve exited $rc after SIGTERM"; exit 1; }
for i in 1 2 3; do
  eval "p=\$gen_$i"
  wait "$p" || { cat "$dir/d$i.err"; echo "FAIL: accepted generate $i not answered"; exit 1; }
  grep -q '"generated_tokens":40' "$dir/d$i.err" || grep -q '"finish":"eos"' "$dir/d$i.err" ||
    { cat "$dir/d$i.err"; echo "FAIL: generate $i cut short"; exit 1; }
done
grep -q "draining" "$dir/serve.err"
echo "serve ok: SIGTERM drained 3 accepted generates, exit 0"
