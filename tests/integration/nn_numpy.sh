#!/usr/bin/env bash
# Kernels vs the independent numpy reference (tests/ref/nn_ref.py), tol 1e-5 relative.
set -euo pipefail
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null \
  || { echo "skip: /usr/bin/python3 with numpy not available"; exit 77; }
tool="$B/tools/nn_check"
[ -x "$tool" ] || { echo "FAIL: $tool not built"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 tests/ref/nn_ref.py gen "$dir"
"$tool" "$dir"
/usr/bin/python3 tests/ref/nn_ref.py check "$dir"
