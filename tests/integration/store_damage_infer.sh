#!/usr/bin/env bash
# A damaged store never gives a silently wrong answer from `infer --store`:
# for each damage (one flipped value byte, two shard files swapped, a shard
# file zeroed at the same size, one block slot overwritten with another
# block's bytes) `infer` in 1 process and under mpirun -n 4 exits non-zero
# naming the damaged file (and, for flips and overwrites, the block, as
# `verify` names it), with the block checks at open (the default for small
# stores) and on first use (US_STORE_CHECK=first-use). The undamaged store's
# output is unchanged from the one recorded before any damage.
set -euo pipefail
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$US_BIN" init-model --preset tiny --out "$dir/m" --seed 11 --store "$dir/good" --shards 3 >/dev/null
for i in $(seq 1 6); do
  printf '{"id":"p%d","prompt":"prompt %d: the memory layer remembers","max_tokens":8}\n' "$i" "$i"
done >"$dir/in.jsonl"
run() {   # run NPROC STORE OUT: infer's exit status; stderr in OUT.err
  local n=$1 store=$2 out=$3
  local args=(infer --model "$dir/m" --store "$store" --input "$dir/in.jsonl" --output "$out" --quiet)
  rm -f "$out" "$out".journal "$out".lock
  if [ "$n" -eq 1 ]; then "$US_BIN" "${args[@]}" >/dev/null 2>"$out.err"
  else $MPIRUN -n "$n" "$US_BIN" "${args[@]}" >/dev/null 2>"$out.err"; fi
}
run 1 "$dir/good" "$dir/ref1.jsonl"
run 4 "$dir/good" "$dir/ref4.jsonl"
cmp "$dir/ref1.jsonl" "$dir/ref4.jsonl"

slot=4096   # tiny preset: 16 rows x 32 f32 = 2 KiB of rows in one 4 KiB slot
hdr=4096
damage() {   # damage KIND STORE: prints what the error must name
  local kind=$1 s=$2 f
  case $kind in
    flip) f=$s/table-0.shard-1.bin
          printf '\x5a' | dd of="$f" bs=1 seek=$((hdr + slot + 12)) conv=notrunc status=none ;;
    swap) mv "$s/table-0.shard-1.bin" "$s/tmp"; mv "$s/table-0.shard-2.bin" "$s/table-0.shard-1.bin"
          mv "$s/tmp" "$s/table-0.shard-2.bin"; echo "table-0.shard-"; return ;;
    zero) f=$s/table-0.shard-2.bin
          dd if=/dev/zero of="$f" bs="$(stat -c %s "$f")" count=1 conv=notrunc status=none
          echo "table-0.shard-2.bin"; return ;;
    slot) f=$s/table-0.shard-2.bin
          dd if="$f" of="$f" bs=1 skip=$hdr seek=$((hdr + slot)) count=$slot conv=notrunc status=none ;;
  esac
  # flips and overwrites: verify names the block; infer must name the same
  { "$US_BIN" verify "$s" 2>&1 || true; } | grep -o "block [0-9]* in file '[^']*'" | head -1
}
for kind in flip swap zero slot; do
  rm -rf "$dir/bad"; cp -r "$dir/good" "$dir/bad"
  want=$(damage $kind "$dir/bad")
  [ -n "$want" ] || { echo "FAIL: $kind: verify did not find the damage"; exit 1; }
  for check in open first-use; do
    for n in 1 4; do
      out="$dir/out_${kind}_${check}_$n.jsonl"
      if US_STORE_CHECK=$check run "$n" "$dir/bad" "$out"; then
        echo "FAIL: $kind, check $check, $n processes: infer exited 0 on a damaged store"
        cat "$out.err"; exit 1
      fi
      grep -q "$want" "$out.err" || {
        echo "FAIL: $kind, check $check, $n processes: stderr does not name \"$want\""
        cat "$out.err"; exit 1; }
      grep -q "(ECORRUPT)" "$out.err" || {
        echo "FAIL: $kind, check $check, $n processes: not reported as ECORRUPT"
        cat "$out.err"; exit 1; }
    done
  done
  echo "$kind: refused in 1 and 4 processes, check at open and on first use, naming $want"
done
run 1 "$dir/good" "$dir/after1.jsonl"
run 4 "$dir/good" "$dir/after4.jsonl"
cmp "$dir/ref1.jsonl" "$dir/after1.jsonl"
cmp "$dir/ref1.jsonl" "$dir/after4.jsonl"
echo "store_damage_infer ok"
