# serve_env.bash — shell helpers for the tests and benchmarks of `ultrashard
# serve` (sourced by tests/integration/serve_*.sh and tests/bench/serve*.sh).
# Needs US_BIN and MPIRUN (tests/run sets them; the bench scripts set
# defaults). Every process a script starts is tagged with US_SERVE_TAG in its
# environment, so serve_rank_pid finds that script's ranks and nothing else.

SERVE_PY=/usr/bin/python3
SERVE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH="$SERVE_ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
export US_SERVE_TAG="serve-$$-$RANDOM"

# Prints a TCP port that was free on 127.0.0.1 a moment ago (and the next
# one: coordinator c listens on PORT+c).
serve_free_port() {
  "$SERVE_PY" - <<'PY'
import socket
for _ in range(50):
    a, b = socket.socket(), socket.socket()
    try:
        a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]; b.bind(("127.0.0.1", p + 1))
        print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
PY
}

# serve_model DIR [init-model options...]: tiny model DIR/m, 3-shard store DIR/s3.
serve_model() {
  local dir=$1; shift
  "$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/s3" --shards 3 \
    "$@" >/dev/null
}

# serve_cmd DIR PORT [serve options...]: prints nothing; sets SERVE_CMD to the
# mpirun command line of 1 coordinator + 3 shards. SERVE_MPIRUN_EXTRA: more
# mpirun options (e.g. --mca odls_base_sigkill_timeout 0, deploy/supervise.sh).
serve_cmd() {
  local dir=$1 port=$2; shift 2
  # shellcheck disable=SC2206
  SERVE_CMD=($MPIRUN ${SERVE_MPIRUN_EXTRA:-} -n 4 "$US_BIN" serve --model "$dir/m" --store "$dir/s3"
             --listen "127.0.0.1:$port" "$@")
}

# serve_wait PORT [TOKEN_FILE]: waits (up to ~60 s) until Health answers.
serve_wait() {
  local port=$1 tok=${2:-}
  "$SERVE_PY" -m ultrashard_client --connect "127.0.0.1:$port" ${tok:+--token-file "$tok"} \
    --timeout 5 --retries 40 health >/dev/null
}

# serve_rank_pid RANK: the pid of this script's rank RANK, or nothing.
serve_rank_pid() {
  local want=$1 p
  for p in $(pgrep -x ultrashard); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
         grep -qx "US_SERVE_TAG=$US_SERVE_TAG" &&
       tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$want"; then
      echo "$p"; return 0
    fi
  done
}

# serve_stop PID: SIGTERM to the children of PID (the ranks of a one-host
# mpirun; serve's coordinators drain, shards ignore it and are stopped by
# them; mpirun then exits 0 — a SIGTERM to mpirun itself makes it exit 1),
# or to PID when it has none (e.g. deploy/supervise.sh --term-children, which
# does the same); waits; returns PID's exit status.
serve_stop() {
  local kids rc=0
  kids=$(pgrep -P "$1" -x ultrashard | tr '\n' ' ')
  # shellcheck disable=SC2086
  kill -TERM ${kids:-$1} 2>/dev/null || true
  wait "$1" || rc=$?
  return $rc
}
