#!/usr/bin/env bash
# Installs the Debian packages UltraShard needs. Idempotent: when every package
# is present it only checks (no apt call) and returns in well under a second.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config make
  openmpi-bin libopenmpi-dev          # MPI runtime + mpicc headers (ompi-c.pc)
  libfabric-dev libfabric-bin         # fabric transport, fi_info/fi_pingpong
  libprotobuf-c-dev protobuf-c-compiler
  libopenblas-dev                     # sgemm for scoring / projections
  libopenblas-openmp-dev              # the OpenMP build we link (one thread team; Makefile)
  libcjson-dev                        # model config + safetensors headers
  libcmocka-dev                       # unit tests
  clang libclang-rt-14-dev libomp-dev # second compiler (make CC=clang; libomp = its -fopenmp
                                      # runtime) and libFuzzer for make fuzz / fuzz_smoke
  python3-numpy                       # independent reference checks (/usr/bin/python3)
  python3-torch                       # PyTorch twin of the model (python/), equivalence tests, training
  python3-protobuf                    # Python client of the serve API (python/)
  fortunes                            # English text (/usr/share/games/fortunes) for the demo model's training/eval
  iproute2                            # namespace lab (ip netns, tc tbf)
  redis-server libhiredis-dev         # peer in tests/bench/peers.sh (loopback, started/stopped by it)
  gnuplot-nox                         # benchmark plots (tests/bench/plot.py)
  time                                # /usr/bin/time: max RSS in make bench-store
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $p == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install these packages by hand: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup: not root and no password-less sudo; run as root or install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
