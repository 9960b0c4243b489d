#!/usr/bin/env bash
# supervise.sh — keep a service command running: restart it when it exits
# non-zero, stop it cleanly on SIGTERM/SIGINT.
#
#   deploy/supervise.sh [--max-restarts N] [--window S] [--backoff-min S]
#       [--backoff-max S] [--healthy-after S] [--stop-timeout S] [--log FILE]
#       [--term-children] -- COMMAND [ARG...]
#
# Why: Open MPI 4.1 has no ULFM, so one dead rank ends the whole `mpirun ...
# ultrashard serve` job (mpirun aborts it about 1 s later, exit 137; the
# launcher watchdog in proto/world.c kills ranks within 50 ms of mpirun's
# death). Recovery is a restart of the job: stores reopen by mmap, so a new
# job serves again in seconds and clients reconnect and retry.
#
# Rules:
#  - exit 0 of COMMAND: the service stopped on purpose; supervise exits 0.
#  - non-zero exit (or death by a signal): restart after a backoff of
#    backoff-min * 2^(n-1) seconds (capped at backoff-max), n = restarts since
#    COMMAND last ran for at least healthy-after seconds. The first restart
#    waits backoff-min only: a crash is usually a single dead rank.
#  - more than max-restarts restarts within window seconds: give up, exit 1
#    (a command that cannot start — bad store, port in use — must not spin).
#  - SIGTERM/SIGINT: forwarded as SIGTERM to COMMAND (mpirun forwards it to
#    the ranks; serve drains and exits 0); no restart afterwards; SIGKILL if
#    COMMAND is still running after stop-timeout seconds. Exit status is
#    COMMAND's.
#  - --term-children: on stop, SIGTERM goes to COMMAND's child processes
#    (the ranks of a one-host mpirun) instead of COMMAND itself. Why: Open
#    MPI 4.1's mpirun exits 1 after a SIGTERM of its own even when every rank
#    drains and exits 0, and SIGKILLs ranks still running after
#    odls_base_sigkill_timeout (1 s); signalled directly, the ranks drain as
#    long as they need and mpirun exits 0. It also allows `--mca
#    odls_base_sigkill_timeout 0` on the mpirun line, which ends a job whose
#    rank died ~1 s sooner (faster restart). Falls back to COMMAND when it
#    has no children.
# Every start, exit, restart and give-up is logged with a UTC time stamp
# (milliseconds) to --log FILE (appended) or stderr.
set -u

max_restarts=5 window=60 backoff_min=0.2 backoff_max=5 healthy_after=30
stop_timeout=30 log="" term_children=0

usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    --max-restarts|--window|--backoff-min|--backoff-max|--healthy-after|--stop-timeout)
      [ $# -ge 2 ] && is_num "$2" || { echo "supervise: $1 needs a number" >&2; exit 2; }
      v=${1#--}; v=${v//-/_}; printf -v "$v" '%s' "$2"; shift 2 ;;
    --log) [ $# -ge 2 ] || usage; log=$2; shift 2 ;;
    --term-children) term_children=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "supervise: unknown option '$1' (the command goes after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "supervise: no command given (after --)" >&2; exit 2; }
[[ $max_restarts =~ ^[0-9]+$ ]] || { echo "supervise: --max-restarts needs an integer" >&2; exit 2; }

# Times are integer microseconds from $EPOCHREALTIME (bash 5): no process is
# forked to log or to decide, so a restart is not delayed by the supervisor.
now_us() { REPLY=${EPOCHREALTIME/[.,]/}; }
to_us() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000000 }'; }   # options, once
secs() { printf -v "$1" '%d.%03d' $(($2 / 1000000)) $(($2 % 1000000 / 1000)); }  # VAR US

say() {
  local ts ms us=${EPOCHREALTIME/[.,]/}
  TZ=UTC printf -v ts '%(%Y-%m-%dT%H:%M:%S)T' $((us / 1000000))
  printf -v ms '.%03dZ' $((us % 1000000 / 1000))
  ts+=$ms
  if [ -n "$log" ]; then
    printf 'supervise: %s %s\n' "$ts" "$*" >>"$log"
  else
    printf 'supervise: %s %s\n' "$ts" "$*" >&2
  fi
}

window_us=$(to_us "$window") backoff_min_us=$(to_us "$backoff_min")
backoff_max_us=$(to_us "$backoff_max") healthy_us=$(to_us "$healthy_after")
stop_timeout_us=$(to_us "$stop_timeout")
backoff_for() {   # n >= 1 -> REPLY = microseconds
  local d=$backoff_min_us i
  for ((i = 1; i < $1 && d < backoff_max_us; i++)); do d=$((d * 2)); done
  REPLY=$((d > backoff_max_us ? backoff_max_us : d))
}

child="" stopping=0
on_stop() {
  stopping=1
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    if [ "$term_children" = 1 ]; then
      local kids
      kids=$(pgrep -P "$child" | tr '\n' ' ')
      if [ -n "$kids" ]; then
        say "stop requested: SIGTERM to the children of pid $child: $kids"
        # shellcheck disable=SC2086
        kill -TERM $kids 2>/dev/null
        return
      fi
    fi
    say "stop requested: SIGTERM to pid $child"
    kill -TERM "$child" 2>/dev/null
  fi
}
trap on_stop TERM INT

# Waits for the current child; a trapped signal interrupts `wait` (status >
# 128 while the child still runs), so wait again; kill it after stop-timeout.
wait_child() {
  local rc stop_at=""
  while :; do
    wait "$child"; rc=$?
    kill -0 "$child" 2>/dev/null || break
    if [ "$stopping" = 1 ]; then
      now_us
      [ -n "$stop_at" ] || stop_at=$REPLY
      if ((REPLY - stop_at >= stop_timeout_us)); then
        say "pid $child still running ${stop_timeout} s after SIGTERM: SIGKILL"
        kill -KILL "$child" 2>/dev/null
      else
        sleep 0.1 & wait $! 2>/dev/null
      fi
    fi
  done
  return "$rc"
}

restarts=()   # start times (us) of recent restarts, for the rate limit
n_since_healthy=0 starts=0
while :; do
  starts=$((starts + 1))
  "$@" &
  child=$!
  now_us; started=$REPLY
  say "start #$starts pid $child: $*"
  wait_child; rc=$?
  now_us; ran=$((REPLY - started))
  secs ran_s "$ran"
  child=""
  if [ "$rc" -eq 0 ]; then
    say "exit 0 after ${ran_s} s: stopped"
    exit 0
  fi
  if [ "$stopping" = 1 ]; then
    say "exit $rc after ${ran_s} s (stop requested): not restarting"
    exit "$rc"
  fi
  say "exit $rc after ${ran_s} s"
  ((ran >= healthy_us)) && n_since_healthy=0
  now_us; kept=()
  for r in "${restarts[@]}"; do
    ((REPLY - r >= window_us)) || kept+=("$r")
  done
  restarts=("${kept[@]}")
  if [ "${#restarts[@]}" -ge "$max_restarts" ]; then
    say "giving up: ${#restarts[@]} restarts within ${window} s (--max-restarts $max_restarts)"
    exit 1
  fi
  n_since_healthy=$((n_since_healthy + 1))
  backoff_for "$n_since_healthy"; delay=$REPLY
  secs delay_s "$delay"
  say "restart in ${delay_s} s (${#restarts[@]} restarts in the last ${window} s)"
  sleep "$delay_s" & wait $! 2>/dev/null
  if [ "$stopping" = 1 ]; then
    say "stop requested during backoff: not restarting"
    exit "$rc"
  fi
  now_us; restarts+=("$REPLY")
done
