#!/usr/bin/env bash
# `ultrashard bench lookup` stays usable: a tiny 3-rank run prints one JSON
# line per configuration with the documented fields and a max relative error
# <= 1e-5 against its single-process baseline; bad options are usage errors.
set -euo pipefail
out=$($MPIRUN -n 3 "$US_BIN" bench lookup --transports mpi --modes push,pull,auto \
      --rows 4096 --dim 16 --tokens 16 --k 4 --batches 3)
echo "$out"
[ "$(grep -c '^{"bench":"lookup"' <<<"$out")" -eq 6 ]   # 3 modes x 2 placements
for f in tokens_per_s rows_per_s bytes_sent_per_token bytes_recv_per_token msgs_per_batch \
         p50_ms p99_ms baseline_tokens_per_s ratio_vs_baseline max_rel_err \
         shard_view_bytes_max whole_table_bytes rank0_maxrss_kib; do
  [ "$(grep -c "\"$f\":" <<<"$out")" -eq 6 ] || { echo "missing field $f"; exit 1; }
done
grep -o '"max_rel_err":[^,]*' <<<"$out" | cut -d: -f2 |
  awk '{ if ($1 > 1e-5) { print "error " $1 " > 1e-5"; bad = 1 } } END { exit bad }'
# push moves 4 messages per batch with 2 shards (2 requests, 2 answers)
grep '"mode":"push"' <<<"$out" | grep -q '"msgs_per_batch":4.0'
# percentiles: p50 <= p99 on every line, also for 2 batches (a truncating
# index once put p99 on the faster of two batches, below p50)
out2=$($MPIRUN -n 2 "$US_BIN" bench lookup --transports mpi --modes push,pull \
       --rows 4096 --dim 16 --tokens 16 --k 4 --batches 2)
for o in "$out" "$out2"; do
  grep '^{"bench":"lookup"' <<<"$o" | sed 's/.*"p50_ms":\([^,]*\),"p99_ms":\([^,]*\),.*/\1 \2/' |
    awk '{ n++; if ($1 + 0 > $2 + 0) { print "p50 " $1 " > p99 " $2; bad = 1 } }
         END { if (n < 4) { print "too few lines: " n; bad = 1 } exit bad }'
done
# on the fly (rows computed per request, nothing materialised): every
# configuration's first batch comes out bit-identical to the materialised run
fly_args=(bench lookup --transports mpi --modes push,pull --dtype int8 --rows 5000 --dim 24
          --tokens 16 --k 4 --batches 2)
mat=$($MPIRUN -n 3 "$US_BIN" "${fly_args[@]}")
fly=$($MPIRUN -n 3 "$US_BIN" "${fly_args[@]}" --on-the-fly)
hashes() { grep -o '"out_hash":"[0-9a-f]*"' <<<"$1"; }
[ "$(hashes "$mat" | wc -l)" -eq 4 ] && [ "$(hashes "$mat" | sort -u | wc -l)" -ge 2 ]
[ "$(hashes "$mat")" = "$(hashes "$fly")" ] || { echo "on-the-fly differs"; echo "$fly"; exit 1; }
grep -q '"whole_table_bytes":0,' <<<"$fly"
# pipelined (2 and 3 batches in flight, 2 coordinators on 4 ranks: the pipe's
# round order and STOP turns): same numbers as one batch at a time
p1=$($MPIRUN -n 4 "$US_BIN" "${fly_args[@]}" --coordinators 2)
p2=$($MPIRUN -n 4 "$US_BIN" "${fly_args[@]}" --coordinators 2 --pipeline 2)
p3=$($MPIRUN -n 3 "$US_BIN" "${fly_args[@]}" --pipeline 3 --batches 5)
[ "$(hashes "$p1" | wc -l)" -eq 4 ] && [ "$(hashes "$p1")" = "$(hashes "$p2")" ] ||
  { echo "pipeline 2 differs"; echo "$p2"; exit 1; }
[ "$(hashes "$p3")" = "$(hashes "$mat")" ] || { echo "pipeline 3 differs"; echo "$p3"; exit 1; }
grep -q '"pipeline":2' <<<"$p2"
set +e
"$US_BIN" bench lookup --rows 0 >/dev/null 2>&1; rc1=$?
"$US_BIN" bench nosuch >/dev/null 2>&1; rc2=$?
"$US_BIN" bench lookup --dtype f64 >/dev/null 2>&1; rc3=$?
set -e
[ "$rc1" -eq 2 ] && [ "$rc2" -eq 2 ] && [ "$rc3" -eq 2 ]
"$US_BIN" bench --help | grep -q "bench lookup"
echo "lookup_bench_cli ok"
