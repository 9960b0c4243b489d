#!/usr/bin/env bash
# The kernels (gather, top-k, PKM/TDQKR scoring, int8 quantisation) against an
# independent numpy reference: the C side dumps inputs and outputs as .npy,
# tests/ref/kernels_ref.py recomputes them in float64 at the stated tolerances.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${B:-build}
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "python3-numpy missing"; exit 77; }
dir=$(mktemp -d /tmp/us_kernels_numpy.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$B/tests/test_kernels_dump" --dump "$dir" || { echo "FAIL: dump"; exit 1; }
/usr/bin/python3 tests/ref/kernels_ref.py "$dir"
