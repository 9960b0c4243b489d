#!/usr/bin/env bash
# lab.sh — several "hosts" on one machine for multi-node MPI runs (root only).
#
# Each host is a network namespace PREFIXhI with one veth whose inner end is
# eth0 (address SUBNET.10+I), all joined by a bridge PREFIXbr0 in the root
# namespace that has no address, so lab traffic never leaves these
# namespaces. mpirun runs inside the first host; the other hosts' daemons
# are started through deploy/lab/netns-agent.sh (ORTE's plm_rsh_agent),
# which enters the host's namespace instead of ssh-ing. Each host has its own
# UTS name (h0, h1, ...) and /etc/netns/PREFIXhI/hosts; /etc/hosts and global
# sysctls are never touched. Facts behind the recipe: /work/shared/LAB.md.
#
# usage: lab.sh up [N]                 create N hosts h0..hN-1 (default 3)
#        lab.sh down                   remove everything this prefix created
#        lab.sh status                 hosts, addresses, qdiscs, relay
#        lab.sh run [--] MPIRUN_ARGS   mpirun inside h0 across the hosts, e.g.
#                                      lab.sh run -n 6 build/ultrashard roles
#        lab.sh exec HOST [--] CMD     run CMD inside HOST (hostname set)
#        lab.sh shape HOST rate RATE   tbf on HOST's egress (eth0 and the
#                                      relay's dly0, now or when it starts),
#                                      e.g. 100mbit
#        lab.sh delay MS [LOSS%]       start the relay (build/netrelay): one
#                                      link with MS one-way delay and LOSS%
#                                      random frame loss on RELAY_SUBNET;
#                                      `run` then points MPI's BTL at it
#        lab.sh delay off              stop the relay
#        lab.sh unshape                remove every tbf and stop the relay
# environment: US_LAB_PREFIX (default us-, 1..8 of [a-z0-9-], starting with a
# letter), US_LAB_SUBNET (default 10.231.0.0/24), US_LAB_RELAY_SUBNET (default
# 10.231.1.0/24); both must be private /24s. US_LAB_RELAY_SEED (default 1).
# B (build dir, default build). Exit: 0 ok, 1 error, 2 usage, 3 `status` of a
# lab that is not up, 77 `delay` on a machine without /dev/net/tun.
set -eEuo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$LAB_DIR/../.." && pwd)
PREFIX=${US_LAB_PREFIX:-us-}
SUBNET=${US_LAB_SUBNET:-10.231.0.0/24}
RELAY_SUBNET=${US_LAB_RELAY_SUBNET:-10.231.1.0/24}
B=${B:-build}
NETRELAY=${US_LAB_NETRELAY:-$ROOT_DIR/$B/netrelay}
RELAY_IF=dly0

die()   { echo "lab: error: $*" >&2; exit 1; }
usage() {   # the header's usage block; stdout for --help, stderr on misuse
  local text
  text=$(sed -n '/^# usage:/,/^# lab that is not up/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//')
  if [ "${1:-2}" -eq 0 ]; then echo "$text"; else echo "$text" >&2; fi
  exit "${1:-2}"
}
note()  { echo "lab: $*" >&2; }

[[ $PREFIX =~ ^[a-z][a-z0-9-]{0,7}$ ]] ||
  { echo "lab: US_LAB_PREFIX '$PREFIX' must be 1..8 of [a-z0-9-], starting with a letter" >&2; exit 2; }

# "10.231.0.0/24" -> "10.231.0"; only private /24s are accepted.
subnet_base() {
  local s=$1 re='^(10\.[0-9]{1,3}\.[0-9]{1,3}|192\.168\.[0-9]{1,3}|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]{1,3})\.0/24$'
  [[ $s =~ $re ]] || { echo "lab: subnet '$s' must be a private /24 like 10.231.0.0/24" >&2; exit 2; }
  echo "${BASH_REMATCH[1]}"
}
BASE=$(subnet_base "$SUBNET")
RELAY_BASE=$(subnet_base "$RELAY_SUBNET")
[ "$BASE" != "$RELAY_BASE" ] || { echo "lab: US_LAB_SUBNET and US_LAB_RELAY_SUBNET must differ" >&2; exit 2; }

STATE=/run/ultrashard-lab/$PREFIX      # hostfile, host count, relay pid and log
BRIDGE=${PREFIX}br0
ns_of()   { echo "${PREFIX}h$1"; }     # host index -> namespace
addr_of() { echo "$BASE.$((10 + $1))"; }
relay_addr_of() { echo "$RELAY_BASE.$((10 + $1))"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, veth, tc)"; }

# Namespaces of this prefix that exist now, in host order.
lab_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}h[0-9]+\$" | sort -V || true
}

n_hosts() { [ -f "$STATE/hosts" ] && cat "$STATE/hosts" || echo 0; }

# "h1" -> index 1, checked against the lab that is up.
host_index() {
  local h=$1 n
  [[ $h =~ ^h([0-9]+)$ ]] || die "host '$h' is not of the form hN"
  n=$(n_hosts)
  [ "${BASH_REMATCH[1]}" -lt "$n" ] || die "host $h does not exist (lab $PREFIX has $n hosts)"
  echo "${BASH_REMATCH[1]}"
}

# The pid in the relay pid file if that process is alive and is our relay
# (a stale file after a crash may name a reused pid: never signal that one).
relay_pid() {
  local f="$STATE/relay.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "netrelay .*--pidfile $f" || return 1
  echo "$pid"
}

# True while process $1 runs (a zombie waiting for its reaper counts as gone:
# the relay's parent shell has exited, and not every init reaps promptly).
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop_relay() {
  local pid i
  if pid=$(relay_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      note "relay $pid ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$STATE/relay.pid" "$STATE/relay.pid.tmp" "$STATE/relay.on"
}

# Ends the processes still inside namespace $1 (orted or ranks of a failed
# run: all started through this lab), TERM first, then KILL.
kill_namespace_processes() {
  local ns=$1 pids i
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -n "$pids" ] || return 0
  note "ending processes left in $ns: $(echo $pids)"
  kill -TERM $pids 2>/dev/null || true
  for i in $(seq 20); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    sleep 0.1
  done
  kill -KILL $pids 2>/dev/null || true
}

# True when anything of this prefix exists (for `down`'s message).
lab_exists() {
  [ -n "$(lab_namespaces)" ] || [ -d "$STATE" ] || ip link show "$BRIDGE" >/dev/null 2>&1
}

cmd_down() {
  need_root
  local ns link d
  stop_relay
  for ns in $(lab_namespaces); do
    kill_namespace_processes "$ns"
    ip netns del "$ns" 2>/dev/null || note "could not delete namespace $ns"
  done
  # Root ends of veths vanish with their namespace; remove any left by an
  # `up` that failed half-way (the peer still named PREFIXpI in the root).
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
                grep -E "^${PREFIX}[vp][0-9]+\$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  for d in /etc/netns/"${PREFIX}"h*; do
    if [[ -d $d && $(basename "$d") =~ ^${PREFIX}h[0-9]+$ ]]; then rm -rf "$d"; fi
  done
  rmdir /etc/netns 2>/dev/null || true      # only if empty: others may use it
  rm -rf "$STATE"
  rmdir /run/ultrashard-lab 2>/dev/null || true
  return 0
}

cmd_up() {
  need_root
  local n=${1:-3} i ns
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 16 ] || die "host count '$n' must be 1..16"
  cmd_down                               # leftovers of an earlier lab with this prefix
  # shellcheck disable=SC2154  # rc is assigned inside the trap string
  trap 'rc=$?; note "up failed (exit $rc); removing what was created"; trap - ERR; cmd_down; exit $rc' ERR
  mkdir -p "$STATE"
  ip link add "$BRIDGE" type bridge
  ip link set dev "$BRIDGE" addrgenmode none     # no IPv6 link-local either
  ip link set dev "$BRIDGE" up
  : >"$STATE/hostfile"
  for i in $(seq 0 $((n - 1))); do
    ns=$(ns_of "$i")
    ip netns add "$ns"
    ip link add "${PREFIX}v$i" type veth peer name "${PREFIX}p$i"
    ip link set dev "${PREFIX}v$i" addrgenmode none
    ip link set dev "${PREFIX}v$i" master "$BRIDGE" up
    ip link set dev "${PREFIX}p$i" netns "$ns"
    ip -n "$ns" link set dev "${PREFIX}p$i" name eth0
    ip -n "$ns" addr add "$(addr_of "$i")/24" dev eth0
    ip -n "$ns" link set dev eth0 up
    ip -n "$ns" link set dev lo up
    echo "h$i slots=2" >>"$STATE/hostfile"
  done
  for i in $(seq 0 $((n - 1))); do
    ns=$(ns_of "$i")
    mkdir -p "/etc/netns/$ns"
    { echo "127.0.0.1 localhost"
      for j in $(seq 0 $((n - 1))); do echo "$(addr_of "$j") h$j"; done
    } >"/etc/netns/$ns/hosts"
  done
  echo "$n" >"$STATE/hosts"
  trap - ERR
  note "up: $n hosts h0..h$((n - 1)) (namespaces ${PREFIX}h0..), bridge $BRIDGE, subnet $SUBNET"
}

cmd_status() {
  local n i ns pid
  n=$(n_hosts)
  if [ "$n" -eq 0 ] && [ -z "$(lab_namespaces)" ]; then
    echo "lab $PREFIX: down"; return 3
  fi
  echo "lab $PREFIX: $n hosts, bridge $BRIDGE, subnet $SUBNET, state $STATE"
  for ns in $(lab_namespaces); do
    echo "  $ns: $(ip -n "$ns" -br -4 addr show | awk '$1 != "lo" {printf "%s %s  ", $1, $3}')"
    ip -n "$ns" -br link show "$RELAY_IF" >/dev/null 2>&1 && ifs="eth0 $RELAY_IF" || ifs=eth0
    for dev in $ifs; do
      echo "    qdisc $dev: $(tc -n "$ns" qdisc show dev "$dev" | head -1)"
    done
  done
  if pid=$(relay_pid); then
    echo "  relay: pid $pid, $(cat "$STATE/relay.on" 2>/dev/null), subnet $RELAY_SUBNET"
  else
    echo "  relay: off"
  fi
}

# Runs CMD... inside host index $1 with its UTS name set: the hostname is
# what MPI reports, and what mpirun matches against the hostfile.
in_host() {
  local i=$1; shift
  ip netns exec "$(ns_of "$i")" unshare --uts sh -c 'hostname "$1"; shift; exec "$@"' sh "h$i" "$@"
}

cmd_run() {
  need_root
  [ "$(n_hosts)" -ge 1 ] || die "lab $PREFIX is not up (lab.sh up)"
  [ "${1:-}" != "--" ] || shift
  [ $# -ge 1 ] || die "run needs mpirun arguments, e.g. run -n 6 build/ultrashard roles"
  local btl_net=$SUBNET
  if relay_pid >/dev/null; then
    btl_net=$RELAY_SUBNET
    note "relay on ($(cat "$STATE/relay.on")): MPI BTL on $RELAY_SUBNET, ORTE OOB on $SUBNET"
  fi
  export US_LAB_PREFIX=$PREFIX          # read by netns-agent.sh
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
  export FI_PROVIDER=${FI_PROVIDER:-tcp}  # shm would bypass the emulated network
  local env_args=() v
  for v in PATH LD_LIBRARY_PATH OMP_NUM_THREADS OPENBLAS_NUM_THREADS FI_PROVIDER; do
    if [ -n "${!v:-}" ]; then env_args+=(-x "$v"); fi
  done
  in_host 0 mpirun --hostfile "$STATE/hostfile" \
    --mca plm_rsh_agent "$LAB_DIR/netns-agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include "$btl_net" \
    --mca oob_tcp_if_include "$SUBNET" \
    --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 \
    "${env_args[@]}" "$@"
}

cmd_exec() {
  need_root
  [ $# -ge 2 ] || usage
  local i
  i=$(host_index "$1"); shift
  [ "$1" != "--" ] || shift
  in_host "$i" "$@"
}

# Interfaces of host $1 that carry emulated links (eth0, and the relay TAP).
link_devs() {
  local ns=$1
  echo eth0
  ip -n "$ns" link show "$RELAY_IF" >/dev/null 2>&1 && echo "$RELAY_IF" || true
}

cmd_shape() {
  need_root
  [ $# -eq 3 ] && [ "$2" = rate ] || usage
  local i ns dev
  i=$(host_index "$1"); ns=$(ns_of "$i")
  [[ $3 =~ ^[0-9]+(\.[0-9]+)?([kKmMgG]?(bit|bps))$ ]] || die "rate '$3' must look like 100mbit, 1gbit, 500kbit"
  # shellcheck disable=SC2046  # one word per device, on purpose
  apply_tbf "$ns" "$3" $(link_devs "$ns")
  echo "$3" >"$STATE/shape.h$i"         # re-applied to a relay TAP started later
  note "shape: $1 egress limited to $3 on $(link_devs "$ns" | tr '\n' ' ')"
}

apply_tbf() {   # NS RATE DEV...
  local ns=$1 rate=$2 dev; shift 2
  for dev in "$@"; do
    tc -n "$ns" qdisc replace dev "$dev" root tbf rate "$rate" burst 128kb latency 50ms
  done
}

cmd_unshape() {
  need_root
  local ns dev
  stop_relay
  for ns in $(lab_namespaces); do
    for dev in $(link_devs "$ns"); do
      tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
    done
  done
  rm -f "$STATE"/shape.h*
  note "unshape: no tbf, relay off"
}

cmd_delay() {
  need_root
  [ $# -ge 1 ] && [ $# -le 2 ] || usage
  if [ "$1" = off ]; then stop_relay; note "relay off"; return 0; fi
  local ms=$1 loss=${2:-0} n delay_us i ns pid nss=() mac
  loss=${loss%\%}
  [[ $ms =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN{exit !($ms <= 10000)}" ||
    die "delay '$ms' must be milliseconds in [0, 10000]"
  [[ $loss =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk "BEGIN{exit !($loss <= 100)}" ||
    die "loss '$loss' must be a percentage in [0, 100]"
  n=$(n_hosts)
  [ "$n" -ge 2 ] || die "delay needs a lab with at least 2 hosts (lab $PREFIX has $n)"
  if [ ! -c /dev/net/tun ]; then
    echo "lab: /dev/net/tun is not available on this machine: no TAP devices, so no delay/loss relay (skipped)" >&2
    exit 77
  fi
  [ -x "$NETRELAY" ] || die "$NETRELAY not built (make -j2)"
  stop_relay
  delay_us=$(awk "BEGIN{printf \"%d\", $ms * 1000 + 0.5}")
  for i in $(seq 0 $((n - 1))); do nss+=("$(ns_of "$i")"); done
  setsid "$NETRELAY" --delay-us "$delay_us" --loss "$loss" --seed "${US_LAB_RELAY_SEED:-1}" \
    --ifname "$RELAY_IF" --pidfile "$STATE/relay.pid" "${nss[@]}" \
    </dev/null >"$STATE/relay.log" 2>&1 &
  pid=$!
  for i in $(seq 100); do
    [ -f "$STATE/relay.pid" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! relay_pid >/dev/null; then
    cat "$STATE/relay.log" >&2 || true
    die "relay did not start"
  fi
  for i in $(seq 0 $((n - 1))); do
    ip -n "$(ns_of "$i")" addr add "$(relay_addr_of "$i")/24" dev "$RELAY_IF"
    ip -n "$(ns_of "$i")" link set dev "$RELAY_IF" up
  done
  # Static neighbours on the relay link: loss then hits data frames only,
  # not ARP (a lost ARP reply would stall a connection for a second).
  for i in $(seq 0 $((n - 1))); do
    mac=$(ip -n "$(ns_of "$i")" -br link show "$RELAY_IF" | awk '{print $3}')
    for j in $(seq 0 $((n - 1))); do
      [ "$i" -eq "$j" ] && continue
      ip -n "$(ns_of "$j")" neigh replace "$(relay_addr_of "$i")" lladdr "$mac" \
        dev "$RELAY_IF" nud permanent
    done
  done
  for i in $(seq 0 $((n - 1))); do       # rates set by `shape` before the relay
    if [ -f "$STATE/shape.h$i" ]; then
      apply_tbf "$(ns_of "$i")" "$(cat "$STATE/shape.h$i")" "$RELAY_IF"
    fi
  done
  echo "delay ${ms} ms, loss ${loss}%" >"$STATE/relay.on"
  note "delay: relay pid $(relay_pid) on $RELAY_SUBNET ($RELAY_IF in each host): one-way delay ${ms} ms, loss ${loss}%"
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
  up)      [ $# -le 1 ] || usage; cmd_up "$@" ;;
  down)    [ $# -eq 0 ] || usage
           if lab_exists; then cmd_down; note "down: lab $PREFIX removed"
           else cmd_down; note "down: nothing of lab $PREFIX to remove"; fi ;;
  status)  [ $# -eq 0 ] || usage; cmd_status ;;
  run)     cmd_run "$@" ;;
  exec)    cmd_exec "$@" ;;
  shape)   cmd_shape "$@" ;;
  unshape) [ $# -eq 0 ] || usage; cmd_unshape ;;
  delay)   cmd_delay "$@" ;;
  -h|--help|help) usage 0 ;;
  *)       echo "lab: unknown command '$cmd'" >&2; usage ;;
esac
