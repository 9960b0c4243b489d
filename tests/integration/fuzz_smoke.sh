#!/usr/bin/env bash
# Every libFuzzer harness (tests/fuzz/) for a few seconds on its seed corpus:
# `make fuzz` fails on any crash, leak, timeout or broken parser contract.
# Skipped (77) where clang or its libFuzzer runtime is missing (deploy/setup.sh
# installs clang, libclang-rt-14-dev and libomp-dev).
set -u
cd "$(dirname "$0")/../.."
SECONDS_EACH=${US_FUZZ_SECONDS:-4}   # 9 harnesses: about a minute with start-up
probe=$(mktemp -d); trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' >"$probe/p.c"
if ! command -v clang >/dev/null 2>&1 ||
   ! clang -fsanitize=fuzzer,address,undefined -fopenmp -o "$probe/p" "$probe/p.c" >/dev/null 2>&1; then
  echo "clang with libFuzzer and OpenMP not available (install clang libclang-rt-14-dev libomp-dev)"
  exit 77
fi
make --no-print-directory fuzz FUZZ_SECONDS="$SECONDS_EACH" 2>&1 | grep -v '^clang \|^ar \|^protoc-c '
exit "${PIPESTATUS[0]}"
