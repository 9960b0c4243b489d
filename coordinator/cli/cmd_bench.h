/* cmd_bench.h — `ultrashard bench NAME`: benchmarks (JSON lines + table). */
#ifndef US_CMD_BENCH_H
#define US_CMD_BENCH_H

#define US_CMD_BENCH_USAGE \
    "usage: mpirun -n N ultrashard bench lookup [options]\n" \
    "\n" \
    "lookup: distributed lookup of a synthetic table for each transport, mode\n" \
    "and placement; the baseline is the single-process gather of the same\n" \
    "batches over the whole table, measured in the same run. Prints one JSON\n" \
    "line per configuration, then a table. Options:\n" \
    "  --transports LIST   mpi,fabric (default both; fabric skipped if it cannot open)\n" \
    "  --modes LIST        push,pull,pullmsg,auto (default push,pull,pullmsg);\n" \
    "                      pull reads rows one-sided on fabric, pullmsg always\n" \
    "                      fetches them with ROWS messages\n" \
    "  --placements LIST   row,column (default row,column)\n" \
    "  --rows N            table rows (default 131072)\n" \
    "  --dim D             columns (default 128)\n" \
    "  --dtype T           f32, bf16, f16, int8 (default f32)\n" \
    "  --tokens T          tokens per batch (default 256)\n" \
    "  --k K               rows per token (default 32)\n" \
    "  --batches B         timed batches per configuration (default 20)\n" \
    "  --hot F             fraction of pairs drawn from 1024 hot rows (default 0.2)\n" \
    "  --zipf A            keys by Zipf(A) rank over all rows instead (A > 0; --hot ignored)\n" \
    "  --threads N         gather threads per rank (default 1)\n" \
    "  --cache-bytes N     coordinator hot-row cache (default 0)\n" \
    "  --cache-always      use the cache on every batch (default: a gate measures\n" \
    "                      batches with and without it and bypasses it while it\n" \
    "                      does not pay)\n" \
    "  --read-us X         cost of one one-sided read in the cost model (default 8);\n" \
    "                      also sets how far apart rows may be to share one read\n" \
    "  --on-the-fly        shards and the baseline compute each requested row from\n" \
    "                      (seed, table, row) instead of holding the table: tables\n" \
    "                      of 1e11 values fit; both sides pay the row synthesis;\n" \
    "                      no one-sided pull (pull goes by ROWS messages)\n" \
    "  --pipeline D        batches in flight per coordinator, 1..4 (default 1):\n" \
    "                      D lookups on D transports used round-robin\n" \
    "  --coordinators C, --all-roles   roles as for `ultrashard roles`\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_bench(int argc, char **argv);

#endif
