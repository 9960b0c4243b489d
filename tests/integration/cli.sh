#!/usr/bin/env bash
# The executable's contract: --help, --version, per-command help, exit 2 on misuse.
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
"$US_BIN" --help | grep -q "^usage: ultrashard" || fail "--help"
"$US_BIN" --version | grep -Eq "^ultrashard [0-9]+\.[0-9]+\.[0-9]+" || fail "--version"
"$US_BIN" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no args should exit 2"
"$US_BIN" no-such-command >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command should exit 2"
"$US_BIN" --no-such-option >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option should exit 2"
# every command listed in --help answers --help with its usage and exit 0
for c in $("$US_BIN" --help | awk '/^commands:/{on=1;next} on && /^  [a-z]/{print $1}'); do
  "$US_BIN" "$c" --help | grep -q "usage:" || fail "$c --help"
  "$US_BIN" "$c" --definitely-not-an-option >/dev/null 2>&1; rc=$?
  [ $rc -eq 2 ] || fail "$c with unknown option exits $rc, want 2"
done
echo "cli ok"
