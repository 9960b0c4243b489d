#!/bin/sh
# netns-agent.sh — Open MPI's plm_rsh_agent for the lab (deploy/lab/lab.sh).
#
# ORTE starts a daemon on a remote host by running `AGENT [options] HOST
# orted ARGS...`, as it would run ssh. Here a "host" hN is the network
# namespace ${US_LAB_PREFIX}hN on this machine: skip the options, enter the
# namespace with its own UTS name (so the daemon and its ranks report hN),
# and run the daemon command. Like ssh, the command words are joined with
# spaces and parsed by a shell: ORTE quotes its arguments for exactly that.
set -eu
prefix=${US_LAB_PREFIX:-us-}
while [ $# -gt 0 ]; do
  case $1 in
    -*) shift ;;
    *)  break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "netns-agent: usage: netns-agent.sh [options] HOST COMMAND..." >&2
  exit 2
fi
host=$1
shift
case $host in
  h[0-9]|h[0-9][0-9]) ;;
  *) echo "netns-agent: host '$host' is not a lab host (h0, h1, ...)" >&2; exit 2 ;;
esac
if ! ip netns list | awk '{print $1}' | grep -qx "${prefix}${host}"; then
  echo "netns-agent: no network namespace ${prefix}${host} (is the lab up? lab.sh up)" >&2
  exit 1
fi
exec ip netns exec "${prefix}${host}" unshare --uts sh -c "hostname $host; $*"
