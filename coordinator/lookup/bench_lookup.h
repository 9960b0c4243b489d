/*
 * bench_lookup.h — the lookup benchmark: the distributed lookup measured
 * against the single-process gather of the same batches, in the same run.
 *
 * Every shard materialises its part of a synthetic table once per placement
 * (shard/synth_view.h); rank 0 also builds the whole table for the baseline
 * and the correctness check. With on_the_fly nothing is materialised: shards
 * serve from a us_synth_source, and the baseline computes each batch's
 * distinct rows (deduplicated as the coordinator does) into scratch and
 * gathers over them, timed as part of the baseline. For each (transport, placement, mode) all ranks
 * open a lookup and run one job (coordinator/lookup/job.h): coordinators run
 * 2 warm-up batches and B timed batches, shards serve. The baseline is the
 * single-process gather of the same batches on rank 0, timed alone after
 * the job while every other rank sleeps (until 2026-12-04 it was timed
 * between batches, sharing the cores with the shards' polling).
 * Rank 0 prints one JSON line per configuration: tokens/s, rows/s (pairs
 * gathered), bytes sent and received per token and messages (+ one-sided
 * reads) per batch as seen by rank 0, p50/p99 batch latency, the baselines'
 * tokens/s and ratios, the max relative error against the baseline, and
 * memory (largest shard view, whole table, peak RSS of rank 0); then a table
 * of all of them.
 */
#ifndef US_BENCH_LOOKUP_H
#define US_BENCH_LOOKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/us_status.h"
#include "proto/world.h"
#include "kernels/convert.h"

typedef struct us_bench_lookup_opts {
    char transports[64];         /* comma list of "mpi", "fabric" */
    char modes[64];              /* comma list of "push", "pull", "pullmsg", "auto" */
    char placements[64];         /* comma list of "row", "column" */
    uint64_t rows;
    uint32_t dim, tokens, k, batches;
    us_dtype dtype;
    double hot;                  /* fraction of pairs drawn from 1024 hot rows */
    double zipf;                 /* > 0: keys by Zipf(zipf) rank instead of the hot set */
    int threads;
    uint64_t cache_bytes;
    bool cache_always;           /* no gate: every batch uses the cache */
    double read_us;              /* cost model: one-sided read cost (< 0: default) */
    int pipeline;                /* batches in flight per coordinator (pipe.h) */
    bool on_the_fly;             /* rows computed per request (us_synth_source),
                                  * on the shards and in the baseline */
    us_world_opts world;         /* roles */
} us_bench_lookup_opts;

/* Returns: the defaults of `ultrashard bench lookup` (its usage text lists
 * them; cannot fail). */
us_bench_lookup_opts us_bench_lookup_defaults(void);

/* Starts MPI (argc/argv as for MPI_Init), runs every selected configuration,
 * prints the JSON lines and the table on rank 0, finalizes MPI. A transport
 * that cannot open is skipped with a note on stderr.
 * Returns: US_OK; US_EMPI / US_EINVAL when the world cannot start (bad role
 * options); US_ECORRUPT when a configuration's max relative error against
 * the baseline exceeds 1e-5 (every rank returns it). Aborts the job
 * (us_world_abort) when a rank fails to build its table view or a
 * configuration fails on any rank, since the others would wait in a round. */
int us_bench_lookup_run(const us_bench_lookup_opts *o, int *argc, char ***argv, us_err *err);

#endif
