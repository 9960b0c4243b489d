#!/usr/bin/env bash
# A crashed import (a rank SIGKILLs itself after committing some shard files,
# via the test hook US_FAULT_KILL_AFTER_FILES) leaves no store, only the
# stage; the same command then resumes, keeping the committed files, and the
# result is bit-exact. A changed command starts over instead.
set -uo pipefail
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d /tmp/us_resume.XXXXXX)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 -c "
import numpy as np
np.save('$T/v.npy', np.random.default_rng(4).standard_normal((16384, 64)).astype(np.float32))
np.save('$T/w.npy', np.random.default_rng(5).standard_normal((3000, 16)).astype(np.float16))
"
imp() { "$US_BIN" import --quiet --out "$T/st" --shards 8 --block-bits 8 --dtype bf16 \
          --table v="$T/v.npy" --table w="$T/w.npy" "$@"; }
shard_files() { ls "$T/st.partial" 2>/dev/null | grep -c '^table-[0-9]*\.shard-[0-9]*\.bin$'; }

# one process: killed after 5 of 16 shard files
US_FAULT_KILL_AFTER_FILES=5 imp >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] || fail "the fault hook did not fire"
[ ! -e "$T/st" ] || fail "a crashed import left a store"
[ "$(shard_files)" -eq 5 ] || fail "expected 5 committed shard files, found $(shard_files)"
[ -f "$T/st.partial/import.plan" ] || fail "no plan in the stage"
# a crash during a write leaves a temp file: resume removes it
head -c 5000 /dev/urandom >"$T/st.partial/table-0.shard-5.bin.tmp.99999"
imp >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "resume"; }
cat "$T/out"
grep -q "resumed after a crash: kept 5 shard files" "$T/out" || fail "resume did not keep the 5 files"
[ ! -e "$T/st.partial" ] || fail "stage left behind"
[ ! -e "$T/st/import.plan" ] || fail "plan left in the store"
ls "$T/st" | grep -q tmp && fail "temp file left in the store"
out=$("$US_BIN" verify "$T/st" --against v="$T/v.npy" --against w="$T/w.npy")
grep -q ": ok: .*19384 rows compared" <<<"$out" || { echo "$out"; fail "resumed store differs"; }

# under mpirun: one rank dies after 2 files, mpirun ends the job; resume with 2 ranks
rm -rf "$T/st"
US_FAULT_KILL_AFTER_FILES=2 $MPIRUN -n 2 -x US_FAULT_KILL_AFTER_FILES "$US_BIN" import --quiet \
  --out "$T/st" --shards 8 --block-bits 8 --dtype bf16 --table v="$T/v.npy" --table w="$T/w.npy" \
  >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] || fail "mpirun fault hook did not fire"
[ ! -e "$T/st" ] || fail "a crashed mpirun import left a store"
kept=$(shard_files)
[ "$kept" -ge 2 ] || fail "expected >= 2 committed files, found $kept"
$MPIRUN -n 2 "$US_BIN" import --quiet --out "$T/st" --shards 8 --block-bits 8 --dtype bf16 \
  --table v="$T/v.npy" --table w="$T/w.npy" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "mpirun resume"; }
grep -q "resumed after a crash: kept $kept shard files" "$T/out" || { cat "$T/out"; fail "mpirun resume count"; }
out=$($MPIRUN -n 2 "$US_BIN" verify "$T/st" --against v="$T/v.npy" --against w="$T/w.npy")
grep -q ": ok: .*19384 rows compared" <<<"$out" || { echo "$out"; fail "mpirun resumed store differs"; }

# a different command after a crash starts over (nothing kept)
rm -rf "$T/st"
US_FAULT_KILL_AFTER_FILES=3 imp >/dev/null 2>&1
[ "$(shard_files)" -eq 3 ] || fail "setup of the changed-plan case"
imp --seed 7 >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "import with another seed"; }
grep -q "resumed" "$T/out" && fail "resumed under a different plan"
"$US_BIN" verify "$T/st" --against v="$T/v.npy" | grep ": ok:" >/dev/null || fail "fresh store"
echo "store_resume ok"
