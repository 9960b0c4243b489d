#!/usr/bin/env bash
# deploy/supervise.sh's rules with stand-in commands (no MPI, ~3 s): a command
# failing twice then running is restarted with growing backoff and stopped
# cleanly by SIGTERM (exit 0, no further start); a command that always fails
# makes it give up after --max-restarts within --window (exit 1); exit 0 ends
# it without a restart; --term-children signals the children, not the command;
# bad options exit 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
S=deploy/supervise.sh
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/flaky" <<'SH'
#!/usr/bin/env bash
n=$(( $(cat "$1/count" 2>/dev/null || echo 0) + 1 )); echo $n >"$1/count"
[ $n -ge 3 ] || exit 3
trap 'echo term >"$1/got_term"; exit 0' TERM
touch "$1/running"
while :; do sleep 0.05; done
SH
chmod +x "$dir/flaky"
$S --backoff-min 0.05 --log "$dir/a.log" -- "$dir/flaky" "$dir" &
sup=$!
for _ in $(seq 1 100); do [ -f "$dir/running" ] && break; sleep 0.05; done
[ -f "$dir/running" ] || { cat "$dir/a.log"; echo "FAIL: third start never ran"; exit 1; }
kill -TERM $sup
rc=0; wait $sup || rc=$?
cat "$dir/a.log"
[ $rc -eq 0 ] || { echo "FAIL: supervisor exit $rc after SIGTERM, want 0"; exit 1; }
[ -f "$dir/got_term" ] || { echo "FAIL: command got no SIGTERM"; exit 1; }
[ "$(grep -c ' start #' "$dir/a.log")" -eq 3 ] || { echo "FAIL: want 3 starts"; exit 1; }
grep -q 'exit 3 after' "$dir/a.log" && grep -q 'restart in 0.050 s' "$dir/a.log" &&
  grep -q 'restart in 0.100 s' "$dir/a.log" || { echo "FAIL: backoff 0.05 then 0.1 not logged"; exit 1; }

rc=0; $S --max-restarts 2 --window 30 --backoff-min 0.01 --log "$dir/b.log" -- false || rc=$?
[ $rc -eq 1 ] && grep -q 'giving up: 2 restarts within 30 s' "$dir/b.log" &&
  [ "$(grep -c ' start #' "$dir/b.log")" -eq 3 ] || { cat "$dir/b.log"; echo "FAIL: give-up rule"; exit 1; }
echo "gave up after 2 restarts"

rc=0; $S --log "$dir/c.log" -- true || rc=$?
[ $rc -eq 0 ] && [ "$(grep -c ' start #' "$dir/c.log")" -eq 1 ] || { echo "FAIL: exit 0 restarted"; exit 1; }

# --term-children: SIGTERM reaches the command's child (which exits 0 on
# it), not the command (which would note it)
cat >"$dir/parent" <<'SH'
#!/usr/bin/env bash
bash -c 'trap "exit 0" TERM; while :; do sleep 0.05; done' &
kid=$!
trap 'touch "$1/parent_term"' TERM
touch "$1/parent_up"
while kill -0 $kid 2>/dev/null; do wait $kid; done
SH
chmod +x "$dir/parent"
$S --term-children --log "$dir/d.log" -- "$dir/parent" "$dir" &
sup=$!
for _ in $(seq 1 100); do [ -f "$dir/parent_up" ] && break; sleep 0.05; done
sleep 0.2
kill -TERM $sup
rc=0; wait $sup || rc=$?
[ $rc -eq 0 ] && [ ! -e "$dir/parent_term" ] && grep -q 'SIGTERM to the children of pid' "$dir/d.log" ||
  { cat "$dir/d.log"; echo "FAIL: --term-children (exit $rc)"; exit 1; }

rc=0; $S --max-restarts x -- true 2>/dev/null || rc=$?
[ $rc -eq 2 ] || { echo "FAIL: bad option exit $rc, want 2"; exit 1; }
rc=0; $S 2>/dev/null || rc=$?
[ $rc -eq 2 ] || { echo "FAIL: no command exit $rc, want 2"; exit 1; }
echo "supervise_rules ok"
