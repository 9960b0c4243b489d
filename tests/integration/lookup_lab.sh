#!/usr/bin/env bash
# The distributed lookup across emulated hosts: 6 ranks on 3 network
# namespaces (deploy/lab/lab.sh, 2 ranks per host, traffic over veth +
# bridge), tests/mpi/lookup_check --quick with the mpi transport and with
# the fabric transport over tcp (tcp;ofi_rxm): every case equal to the
# single-process reference. Own prefix and subnets so it never meets another
# lab. Exit 77 (skip) when not root or namespaces cannot be created.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
LAB=deploy/lab/lab.sh
export US_LAB_PREFIX="lk$(($$ % 100000))-"
export US_LAB_SUBNET=10.231.210.0/24 US_LAB_RELAY_SUBNET=10.231.211.0/24
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
if [ "$(id -u)" -ne 0 ] || [ ! -x "$LAB" ]; then
  echo "skip: lookup_lab needs root and deploy/lab/lab.sh"; exit 77
fi
cleanup() { bash "$LAB" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
if ! bash "$LAB" up 3 >/dev/null 2>&1; then
  echo "skip: the namespace lab cannot be built here (see deploy/lab/README.md)"; exit 77
fi
CHECK="$PWD/$B/tests/mpi/lookup_check"
for transport in mpi fabric; do
  out=$(FI_PROVIDER=tcp bash "$LAB" run -n 6 "$CHECK" --transport $transport --quick)
  echo "$out"
  grep -Eq "^lookup_check ok: [0-9]+ cases, 6 ranks \(1 coordinators, 5 shards\), transport $transport" <<<"$out"
  ! grep -q " FAIL$" <<<"$out"
done
out=$(FI_PROVIDER=tcp bash "$LAB" run -n 6 "$CHECK" --transport fabric --malformed)
grep -q "row not held .*ENOTFOUND" <<<"$out"
echo "lookup_lab ok"
