/*
 * store_check.h — whole-store checks and summaries behind `ultrashard verify`
 * and `ultrashard inspect`, so the CLI only parses options and prints.
 *
 * us_store_check is collective over a communicator: every rank reads the
 * manifest and rank r checks shards r, r + size, ... (each block's CRC-32C,
 * then, when the shard has no bad block, every local row of each --against
 * table against its tensor file). Totals are summed over ranks. A failing
 * shard does not stop the others: each one is counted and, when `log` is
 * set, named there on one line, so one run reports every damaged shard.
 *
 * us_store_summarize reads only the manifest: per-table stored bytes and
 * per-shard block and byte counts (synthetic tables store nothing).
 */
#ifndef US_STORE_CHECK_H
#define US_STORE_CHECK_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/us_status.h"
#include "shard/import.h"
#include "shard/manifest.h"

typedef struct us_store_check_opts {
    const char *dir;
    uint32_t expect_shards;            /* refuse another shard count; 0 = any */
    const us_import_table *against;    /* tables to compare with their files */
    size_t n_against;
    FILE *log;                         /* one line per failing shard; NULL = silent */
} us_store_check_opts;

typedef struct us_store_check_report {  /* sums over all ranks */
    uint64_t files;           /* shard files checked (non-synthetic tables x shards) */
    uint64_t blocks, bad_blocks, bytes;
    uint64_t rows_compared;   /* rows compared with --against files */
    int failures;             /* manifest, shards that failed to open, verify or compare */
    bool manifest_failed;     /* the manifest was unreadable or mismatched: *err says why */
    double seconds;           /* wall time of the slowest rank */
} us_store_check_report;

/* Checks the store (collective over comm; see the top comment) and fills *rep
 * on every rank.
 * Returns: US_OK when every check passed on every rank; US_ECORRUPT when some
 * shard failed (rep->failures > 0, each named in o->log, *err untouched);
 * when the manifest cannot be read or has another shard count than
 * o->expect_shards, its code (US_ENOTFOUND, US_EIO, US_ECORRUPT, US_EVERSION,
 * US_EINVAL) with rep->manifest_failed set and *err naming the store, on
 * every rank, after the collectives. */
int us_store_check(MPI_Comm comm, const us_store_check_opts *o, us_store_check_report *rep,
                   us_err *err);

typedef struct us_store_summary {
    uint64_t *table_bytes;     /* [n_tables] bytes stored for each table */
    uint64_t *shard_blocks;    /* [shard_count] blocks held by each shard */
    uint64_t *shard_bytes;     /* [shard_count] */
    uint64_t total_blocks, total_bytes;
    double balance;            /* max over mean blocks per shard; 1 when empty */
} us_store_summary;

/* Computes the summary of manifest m into *s (owned arrays).
 * Returns: US_OK, or US_ENOMEM (then *s holds nothing to free). */
int us_store_summarize(const us_manifest *m, us_store_summary *s, us_err *err);

/* Frees the arrays of *s. Returns: nothing. */
void us_store_summary_free(us_store_summary *s);

#endif
