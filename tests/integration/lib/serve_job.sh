# Sourced by serve.sh and serve_multi.sh (not a test itself: tests/run runs only
# tests/integration/*.sh): a scratch directory and an exit
# trap that kills the serve job (mpirun_pid, set by the script when it starts
# mpirun in the background) and removes the directory, whatever way the
# script ends. Sets PY, dir, mpirun_pid.
PY=/usr/bin/python3
dir=$(mktemp -d)
mpirun_pid=""
cleanup() {
  [ -n "$mpirun_pid" ] && kill -9 "$mpirun_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
