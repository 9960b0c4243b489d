#!/usr/bin/env bash
# The Python client (python/ultrashard_client) against `ultrashard serve`
# under mpirun (1 coordinator + 3 shards, tiny model, 3-shard store):
# greedy generate equals `ultrashard infer`, lookup equals the numpy gather
# of values/table_0.npy, memory and RemoteMemory answer, a wrong token is
# refused (tests/python/serve_check.py); SIGTERM then stops it with exit 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/tools/serve_env.bash
"$US_BIN" serve --help >/dev/null 2>&1 || { echo "skip: this ultrashard has no serve command"; exit 77; }
"$SERVE_PY" -c 'import google.protobuf, numpy, torch' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 lacks google.protobuf, numpy or torch"; exit 77; }
dir=$(mktemp -d)
pid=""
cleanup() { [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
serve_model "$dir"
for i in 1 2 3; do
  printf '{"id":"p%d","prompt":"prompt %d: the memory layer","max_tokens":%d}\n' "$i" "$i" $((6 + 3 * i))
done >"$dir/in.jsonl"
"$US_BIN" infer --model "$dir/m" --store "$dir/s3" --input "$dir/in.jsonl" \
  --output "$dir/ref.jsonl" --quiet >/dev/null
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/token"
chmod 600 "$dir/token"
port=$(serve_free_port)
serve_cmd "$dir" "$port" --token-file "$dir/token"
"${SERVE_CMD[@]}" >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
serve_wait "$port" "$dir/token" || { cat "$dir/serve.err"; exit 1; }
"$SERVE_PY" tests/python/serve_check.py "$port" "$dir/token" "$dir/in.jsonl" "$dir/ref.jsonl" \
  "$dir/m/values/table_0.npy"
rc=0; serve_stop "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || { echo "FAIL: serve exited $rc after SIGTERM"; tail "$dir/serve.err"; exit 1; }
echo "serve_python ok"
