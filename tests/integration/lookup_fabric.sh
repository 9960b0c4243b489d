#!/usr/bin/env bash
# Distributed lookup over the fabric transport (libfabric RDM: tagged
# push-down messages, one-sided pull) equals the single-process gather, for
# the shm provider and for tcp (tcp;ofi_rxm): 1..8 ranks, two coordinators,
# all roles, and malformed requests (tests/mpi/lookup_check.c); on shm the
# pull reads shards' shared regions mapped into the coordinator (row
# placement in place, column slices by memcpy), once more by process_vm_readv
# (US_FABRIC_MAP=0) and once by fi_read (US_FABRIC_CMA=0);
# plus one quick job on sockets and udp;ofi_rxd when libfabric offers them.
set -euo pipefail
CHECK="$B/tests/mpi/lookup_check"
if ! fi_info -t FI_EP_RDM >/dev/null 2>&1; then
  echo "no libfabric RDM provider on this machine (fi_info -t FI_EP_RDM)"; exit 77
fi
run() {   # run PROVIDER N ARGS...
  local prov=$1 n=$2; shift 2
  local out
  out=$(FI_PROVIDER=$prov $MPIRUN -x FI_PROVIDER -x US_FABRIC_CMA -x US_FABRIC_MAP -n "$n" "$CHECK" \
        --transport fabric "$@")
  echo "$out"
  grep -q "^lookup_check ok:.*transport fabric" <<<"$out"
  ! grep -q " FAIL$" <<<"$out"
  # pull cases must really have read one-sided (except 1 rank: own blocks are copied)
  if [ "$n" -gt 1 ] && [ "${1:-}" != --malformed ]; then
    grep -q "[1-9][0-9]* reads, " <<<"$out"
    # on shm with mapped regions, reads must really have been served by them
    if [ "$prov" = shm ] && [ "$US_FABRIC_MAP" = 1 ] && [ "$US_FABRIC_CMA" = 1 ]; then
      grep -q "[1-9][0-9]* mapped$" <<<"$out"
    else
      grep -q " 0 mapped$" <<<"$out"
    fi
  fi
}
export US_FABRIC_CMA=1 US_FABRIC_MAP=1
for prov in shm tcp; do
  run $prov 1 --quick
  run $prov 2
  run $prov 3 --quick
  run $prov 4 --quick
  run $prov 8 --quick
  run $prov 4 --coordinators 2 --quick
  run $prov 3 --all-roles --quick
  out=$(run $prov 3 --malformed)
  grep -q "row out of range .*ERANGE" <<<"$out"
  grep -q "after malformed rounds: normal batch" <<<"$out"
done
# AUTO with every shard mapped measures push against in-place pull
# (coordinator/lookup/gate.h): after 4 + 3 pull batches it must try push too
json=$(FI_PROVIDER=shm $MPIRUN -x FI_PROVIDER -x US_FABRIC_MAP -n 4 "$US_BIN" bench lookup \
       --transports fabric --modes auto --placements row --rows 16384 --batches 40 | grep '^{')
echo "$json"
grep -q '"push_batches":[1-9]' <<<"$json"
grep -q '"pull_batches":[1-9]' <<<"$json"
grep -q '"max_rel_err":0[,e]' <<<"$json" || grep -q '"max_rel_err":[0-9.]*e-0[6-9]' <<<"$json"
# shm without mapped regions: process_vm_readv of every span
US_FABRIC_MAP=0 run shm 4 --quick
US_FABRIC_MAP=0 run shm 3 --all-roles --quick
# shm without the CMA path: one fi_read per span, as on other providers
US_FABRIC_CMA=0 run shm 4 --quick
US_FABRIC_CMA=0 run shm 3 --all-roles --quick
# other RDM providers libfabric offers here, when present: one quick job each
for prov in sockets "udp;ofi_rxd"; do
  if fi_info -p "$prov" -t FI_EP_RDM >/dev/null 2>&1; then
    run "$prov" 3 --quick
  else
    echo "provider $prov not available: not run"
  fi
done
echo "lookup_fabric ok"
