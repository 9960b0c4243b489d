#!/usr/bin/env bash
# The multi-host lab (deploy/lab/lab.sh) end to end, with its own prefix and
# subnets so it never meets another lab on this machine:
#   1. 3 namespaces; `ultrashard roles` with 6 ranks, 2 on each of h0, h1, h2
#   2. tbf: a 100 Mbit limit on h0's egress caps a one-way MPI stream h0->h1
#      near 12.5 MB/s, far below the unshaped stream measured just before
#   3. relay delay 2 ms: small-message half round trip >= 2 ms (MPI BTL on
#      the relay subnet); relay loss 30%: datagrams lost end to end and in
#      the relay's own counters near 30%
#   4. teardown after failures (relay killed by SIGKILL, a process hung in a
#      host); `up` over a lab that is up replaces it; `down` removes
#      everything (namespaces, bridge, veths, TAPs, relay, /etc/netns dirs,
#      state) and is idempotent
# Misuse (bad subnet, unknown host, bad rate/loss, agent misuse) is refused
# with a clear exit code and changes nothing; an `up` that fails half-way
# cleans up; a second lab with another prefix coexists and leaves alone.
# Exit 77 (skip) when not root or network namespaces cannot be created.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
LAB=deploy/lab/lab.sh
export US_LAB_PREFIX="t$(($$ % 1000000))-"
export US_LAB_SUBNET=10.231.200.0/24 US_LAB_RELAY_SUBNET=10.231.201.0/24
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
P=$US_LAB_PREFIX

fail() { echo "FAIL: $*"; exit 1; }
if [ "$(id -u)" -ne 0 ]; then echo "skip: lab_3hosts needs root (network namespaces)"; exit 77; fi
cleanup() { bash "$LAB" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
# Probe what the lab needs, with names `down` removes: a namespace, a veth
# pair, a bridge; and (optional) the tbf qdisc.
probe_lab() {
  command -v ip >/dev/null && command -v tc >/dev/null &&
    ip netns add "${P}h99" && ip link add "${P}v99" type veth peer name "${P}p99" &&
    ip link add "${P}br0" type bridge
}
if ! probe_lab 2>/dev/null; then
  echo "skip: cannot create network namespaces, veth pairs or bridges here (iproute2 missing, no CAP_NET_ADMIN/CAP_SYS_ADMIN, or no veth/bridge support)"
  exit 77
fi
have_tbf=1
tc qdisc add dev "${P}v99" root tbf rate 1gbit burst 128kb latency 50ms 2>/dev/null || have_tbf=0
cleanup

# json FIELD <<<"json line" -> value
json() { grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2 | tr -d '"'; }
# check "a OP b" with floats
check() { awk "BEGIN{exit !($1)}" || fail "$2 ($1)"; }

# --- misuse changes nothing
set +e
US_LAB_SUBNET=8.8.8.0/24 bash "$LAB" up 3 2>/dev/null; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "a public subnet must be refused with exit 2, got $rc"
[ -z "$(ip netns list | grep "^${P}")" ] || fail "refused up created namespaces"

set +e
bash "$LAB" run -n 2 hostname >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "run on a lab that is not up exits $rc, want 1"

# An `up` that fails half-way (injected: creating the third namespace fails)
# removes what it had created.
shim=$(mktemp -d)
real_ip=$(command -v ip)
cat >"$shim/ip" <<SHIM
#!/bin/sh
if [ "\$1 \$2 \$3" = "netns add ${P}h2" ]; then echo "ip: injected failure" >&2; exit 1; fi
exec $real_ip "\$@"
SHIM
chmod +x "$shim/ip"
set +e
PATH="$shim:$PATH" bash "$LAB" up 3 >"$shim/log" 2>&1; rc=$?
set -e
grep -q "injected failure" "$shim/log" || fail "the injected failure did not happen: $(cat "$shim/log")"
grep -q "up failed" "$shim/log" || fail "failed up did not report: $(cat "$shim/log")"
[ "$rc" -ne 0 ] || fail "up with a failing step exited 0"
sed "s/^/  failed up: /" "$shim/log"; rm -rf "$shim"
[ -z "$(ip netns list | grep "^${P}")" ] || fail "failed up left namespaces: $(ip netns list | grep "^${P}")"
[ -z "$(ip -o link show | grep -F " ${P}")" ] || fail "failed up left links"
! ls -d /etc/netns/"${P}"* >/dev/null 2>&1 || fail "failed up left /etc/netns dirs"

# --- 1. three hosts, six ranks
bash "$LAB" up 3
# misuse of a lab that is up: clear errors, nothing changed
expect_fail() {   # RC DESCRIPTION CMD...
  local want=$1 what=$2 rc; shift 2
  set +e; "$@" >/dev/null 2>&1; rc=$?; set -e
  [ "$rc" -eq "$want" ] || fail "$what: exit $rc, want $want"
}
expect_fail 1 "shape of a host that does not exist" bash "$LAB" shape h3 rate 1gbit
expect_fail 1 "shape with a bad rate" bash "$LAB" shape h1 rate fast
expect_fail 2 "shape without 'rate'" bash "$LAB" shape h1 1gbit
expect_fail 1 "delay with a bad loss" bash "$LAB" delay 1 150
expect_fail 2 "agent with no command" deploy/lab/netns-agent.sh h1
expect_fail 2 "agent for a non-lab host" deploy/lab/netns-agent.sh -x node7 true
expect_fail 1 "agent for a missing host" deploy/lab/netns-agent.sh h9 true
tc -n "${P}h1" qdisc show dev eth0 | grep -q tbf && fail "a refused shape installed tbf"
[ "$(US_LAB_PREFIX=$P deploy/lab/netns-agent.sh -x h2 hostname)" = h2 ] || fail "agent hostname"
for i in 0 1 2; do
  ip netns list | grep -q "^${P}h$i\b" || fail "namespace ${P}h$i missing"
  grep -q "^10.231.200.1$i h$i\$" "/etc/netns/${P}h$i/hosts" || fail "hosts file of h$i"
done
ip -o addr show dev "${P}br0" | grep -q inet && fail "bridge ${P}br0 must have no address"
out=$(bash "$LAB" run -n 6 "$US_BIN" roles)
echo "$out"
grep -q "roles ok: 6 ranks, 1 coordinators, 5 shards, allreduce sum 15" <<<"$out" || fail "roles"
for h in h0 h1 h2; do
  n=$(grep -c "^rank [0-9]/6 on $h:" <<<"$out" || true)
  [ "$n" -eq 2 ] || fail "want 2 ranks on $h, got $n"
done
[ "$(grep -o ' on h[0-9]:' <<<"$out" | sort -u | wc -l)" -eq 3 ] || fail "ranks not on 3 hostnames"

# A second lab with another prefix (same subnet on purpose: the labs are
# isolated) runs and goes away without touching the first.
P2="u$(($$ % 1000000))-"
trap 'cleanup; US_LAB_PREFIX=$P2 bash "$LAB" down >/dev/null 2>&1 || true' EXIT
US_LAB_PREFIX=$P2 bash "$LAB" up 2
out2=$(US_LAB_PREFIX=$P2 bash "$LAB" run -n 4 "$US_BIN" roles)
grep -q "roles ok: 4 ranks" <<<"$out2" || fail "second lab roles: $out2"
[ "$(grep -c ' on h[01]:' <<<"$out2")" -eq 4 ] || fail "second lab ranks not on h0/h1"
US_LAB_PREFIX=$P2 bash "$LAB" down
[ -z "$(ip netns list | grep "^${P2}")" ] || fail "second lab left namespaces"
[ "$(ip netns list | grep -c "^${P}h")" -eq 3 ] || fail "removing the second lab touched the first"

# --- 2. tbf caps a one-way stream h0 -> h1
pp() { bash "$LAB" run -n 2 --host h0,h1 "$B/pingpong" "$@" 2>/dev/null; }
if [ "$have_tbf" = 0 ]; then
  echo "note: no tbf qdisc in this kernel: rate-limit checks skipped"
else
free_json=$(pp --mode stream --sizes 1m --budget-ms 200 --label unshaped)
echo "$free_json"
bash "$LAB" shape h0 rate 100mbit
tc -n "${P}h0" qdisc show dev eth0 | grep -q "tbf .*rate 100Mbit" || fail "tbf not installed"
shaped_json=$(pp --mode stream --sizes 1m --budget-ms 200 --label tbf-100mbit)
echo "$shaped_json"
free=$(json mb_per_s <<<"$free_json"); shaped=$(json mb_per_s <<<"$shaped_json")
[ "$(json host1 <<<"$shaped_json")" = h1 ] || fail "stream did not run between h0 and h1"
# 100 Mbit/s = 12.5 MB/s: tbf's 128 KB burst allows a little more for a moment
check "$shaped <= 12.5 * 1.15 && $shaped >= 12.5 * 0.5" "tbf 100mbit stream at $shaped MB/s"
check "$free >= 4 * $shaped" "unshaped $free MB/s not well above shaped $shaped MB/s"
echo "tbf: unshaped $free MB/s, 100mbit $shaped MB/s, ratio $(awk "BEGIN{printf \"%.1f\", $free/$shaped}")"
bash "$LAB" unshape
tc -n "${P}h0" qdisc show dev eth0 | grep -q tbf && fail "unshape left tbf"
fi

# --- 3. relay: delay, then loss
if [ ! -c /dev/net/tun ]; then
  echo "note: /dev/net/tun missing: relay checks skipped"
else
  bash "$LAB" delay 2
  lat_json=$(pp --sizes 8 --budget-ms 100 --label relay-2ms)
  echo "$lat_json"
  lat=$(json half_rtt_us <<<"$lat_json")
  check "$lat >= 2000 && $lat < 2000 + 8000" "half round trip $lat us with a 2 ms relay delay"

  bash "$LAB" delay 0 30
  rdir=$(mktemp -d)
  bash "$LAB" exec h1 /usr/bin/python3 deploy/lab/udp_probe.py recv 9977 1.0 >"$rdir/recv" &
  recv_pid=$!
  for _ in $(seq 100); do grep -q ready "$rdir/recv" 2>/dev/null && break; sleep 0.05; done
  bash "$LAB" exec h0 /usr/bin/python3 deploy/lab/udp_probe.py send 10.231.201.11 9977 1000 200
  wait "$recv_pid"
  got=$(tail -1 "$rdir/recv"); rm -rf "$rdir"
  echo "udp over relay with 30% loss: $got of 1000 received"
  check "$got >= 600 && $got <= 800" "received $got of 1000 datagrams at 30% loss"
  relay_log=/run/ultrashard-lab/$P/relay.log
  bash "$LAB" delay off
  counters=$(tail -1 "$relay_log"); echo "$counters"
  rx=$(sed -n 's/.*rx \([0-9]*\) frames.*/\1/p' <<<"$counters")
  lost=$(sed -n 's/.*lost \([0-9]*\),.*/\1/p' <<<"$counters")
  check "$rx >= 1000 && $lost >= 0.2 * $rx && $lost <= 0.4 * $rx" "relay lost $lost of $rx frames at 30%"
  ip -n "${P}h0" link show dly0 >/dev/null 2>&1 && fail "TAP dly0 left after delay off"
fi

# --- 4. teardown after failures: a relay killed with SIGKILL (stale pid
# file), a process hung inside a host; `up` over a running lab replaces it;
# `down` leaves nothing
if [ -c /dev/net/tun ]; then
  if [ "$have_tbf" = 1 ]; then
    bash "$LAB" shape h1 rate 1gbit                   # before the relay: applied to its TAP too
  fi
  bash "$LAB" delay 1
  if [ "$have_tbf" = 1 ]; then
    tc -n "${P}h1" qdisc show dev dly0 | grep -q "tbf .*rate 1Gbit" || fail "shape not applied to the relay TAP"
  fi
  kill -KILL "$(cat "/run/ultrashard-lab/$P/relay.pid")"
  for _ in $(seq 50); do ip -n "${P}h0" link show dly0 >/dev/null 2>&1 || break; sleep 0.1; done
  ip -n "${P}h0" link show dly0 >/dev/null 2>&1 && fail "TAP outlived its relay"
  [ -f "/run/ultrashard-lab/$P/relay.pid" ] || fail "expected a stale relay pid file"
  out=$(bash "$LAB" status); grep -q "relay: off" <<<"$out" || fail "status with a stale pid file: $out"
fi
bash "$LAB" exec h1 sleep 300 &
hung=$!
for _ in $(seq 50); do [ -n "$(ip netns pids "${P}h1")" ] && break; sleep 0.1; done
[ -n "$(ip netns pids "${P}h1")" ] || fail "no process inside h1"
bash "$LAB" down
wait "$hung" 2>/dev/null || true
ip netns list | grep -q "^${P}" && fail "down with a hung process left namespaces"
bash "$LAB" up 3
bash "$LAB" delay 1 >/dev/null 2>&1 || true        # a relay running at `up` time
bash "$LAB" up 2
[ "$(ip netns list | grep -c "^${P}h")" -eq 2 ] || fail "up 2 over a 3-host lab"
relay_pid=$(cat "/run/ultrashard-lab/$P/relay.pid" 2>/dev/null || true)
[ -z "$relay_pid" ] || fail "relay pid file survived up"
bash "$LAB" delay 1 >/dev/null 2>&1 || true
relay_pid=$(cat "/run/ultrashard-lab/$P/relay.pid" 2>/dev/null || echo none)
bash "$LAB" down
bash "$LAB" down                                      # idempotent
[ -z "$(ip netns list | grep "^${P}")" ] || fail "namespaces left: $(ip netns list | grep "^${P}")"
[ -z "$(ip -o link show | grep -F " ${P}")" ] || fail "links left: $(ip -o link show | grep -F " ${P}")"
! ls -d /etc/netns/"${P}"* >/dev/null 2>&1 || fail "/etc/netns/${P}* left"
[ ! -e "/run/ultrashard-lab/$P" ] || fail "state dir left"
[ "$relay_pid" = none ] || [ ! -d "/proc/$relay_pid" ] ||
  [ "$(awk '{print $3}' "/proc/$relay_pid/stat")" = Z ] || fail "relay $relay_pid still running"
set +e; bash "$LAB" status >/dev/null; rc=$?; set -e
[ "$rc" -eq 3 ] || fail "status of a removed lab exits $rc, want 3"
echo "lab_3hosts ok"
