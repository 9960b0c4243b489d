/*
 * store.h — UltraShard's block store: how a shard holds and serves its rows.
 *
 * STORAGE CONTRACT
 *
 * A store is a directory:
 *     manifest.pb                 tables, dtypes, dims, rows, block size,
 *                                 shard count, placement seed, per-block
 *                                 CRC-32C, format version (manifest.h)
 *     table-<id>.shard-<s>.bin    the blocks of table <id> owned by shard <s>
 * Several tables (memory layers) live in one store. Block b of a table
 * belongs to shard jump_hash(mix64(table, b, seed), shard_count)
 * (proto/placement.h): there is no block directory to consult, and a shard
 * serves its blocks only from its own files. Each file is a run of
 * 4096-byte-aligned slots, one per owned block in ascending block id order,
 * so a block is one aligned extent that mmap exposes as-is.
 *
 * Writes are crash-safe: every file is written to a temp name, fsync-ed,
 * renamed, and the directory fsync-ed (durable.h); a new store is built in
 * "<dir>.partial" and renamed to <dir> only when complete, so a crash or
 * error never leaves a half store under the real name and never touches an
 * existing store (import/reshard refuse to overwrite one).
 *
 * Backends, chosen per open:
 *     RAM        each local shard file is read into one 4 KiB-aligned
 *                allocation; every block's CRC is checked while loading
 *                (the bytes pass through the CPU anyway).
 *     MMAP       each local shard file is mmap-ed read-only (MAP_SHARED);
 *                pages load on demand, so tables larger than RAM work and
 *                startup costs no scan. CRCs are checked only with verify.
 *     synthetic  tables flagged synthetic in the manifest have no files:
 *                rows are computed from (seed, table, row, col)
 *                (synthetic.h), so 1e9..1e11-row tables cost nothing.
 *
 * What is checked when:
 *     always on open   manifest CRC, version and fields; shard count equals
 *                      the caller's expectation (if given); per table, the
 *                      ShardFile block lists equal the placement; every
 *                      local shard file exists, is a regular file and has
 *                      exactly the manifest's size (a truncated file is
 *                      refused naming table, first missing block and file).
 *     RAM backend      plus every local block's CRC at load.
 *     verify = true    plus every local block's CRC (any backend).
 * A truncated or missing file is never served (checked on every open); a
 * corrupt block is never served by the RAM backend or with verify = true:
 * the open fails with US_ECORRUPT naming the table, the block and the file.
 * An MMAP open without verify trusts the block bytes (restart in
 * milliseconds, the design's choice) until `ultrashard verify` checks them.
 *
 * Returned pointers (us_store_view blocks, us_store_block) point straight into
 * the RAM copy or the mapping: zero copy, read-only, valid until
 * us_store_close(). A block not held by the opened shard(s) is NULL.
 * The store is immutable once open; any number of threads may read.
 *
 * A serving shard rank opens only its own files:
 *
 *     us_store_opts o = { .backend = US_BACKEND_MMAP,
 *                         .shard_index = w.shard_index,     (proto/world.h)
 *                         .expect_shards = w.n_shards };
 *     if ((rc = us_store_open(dir, &o, &store, &err)) != US_OK) ...
 *     us_store_view(store, table, &view, &err);   -> kernels/gather.h
 *
 * In a 1-rank job rank 0 is the only shard and a 1-shard store puts every
 * block in its one file; tools that need every block of a multi-shard store
 * in one process (reshard, tests) open with US_STORE_ALL_SHARDS.
 */
#ifndef US_STORE_H
#define US_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"
#include "shard/manifest.h"

typedef enum us_backend {
    US_BACKEND_MMAP = 0,
    US_BACKEND_RAM = 1,
} us_backend;

#define US_STORE_ALL_SHARDS (-1)

typedef struct us_store_opts {
    us_backend backend;
    int  shard_index;       /* the shard whose files to open, or US_STORE_ALL_SHARDS */
    int  expect_shards;     /* > 0: refuse a store with another shard count */
    bool verify;            /* check every local block's CRC at open */
} us_store_opts;

typedef struct us_store us_store;

/* Opens store `dir` per the contract above. Returns US_OK and *out, or
 * US_ENOTFOUND (no manifest / missing shard file), US_ECORRUPT, US_EVERSION,
 * US_EINVAL (shard count mismatch, bad options), US_EIO, US_ENOMEM. */
int  us_store_open(const char *dir, const us_store_opts *opts, us_store **out, us_err *err);
void us_store_close(us_store *s);

const us_manifest *us_store_manifest(const us_store *s);
const char *us_store_dir(const us_store *s);

/* Index of table `name` (or its decimal id), or US_ENOTFOUND. */
int us_store_find_table(const us_store *s, const char *name, size_t *index, us_err *err);

/* Fills *view for table `index` (pointers owned by the store). Synthetic
 * tables have no bytes to point to: US_EUNSUPP (use us_store_read_row). */
int us_store_view(const us_store *s, size_t index, us_rows_view *view, us_err *err);

/* Whether row is held by the opened shard(s) (synthetic: always). */
bool us_store_has_row(const us_store *s, size_t index, uint64_t row);

/* Copies one row in the table's dtype into out (row_bytes) and, for int8,
 * its scale into *scale. Works for every backend, synthetic included.
 * US_ERANGE for a row beyond the table, US_ENOTFOUND if not local. */
int us_store_read_row(const us_store *s, size_t index, uint64_t row, void *out,
                      float *scale, us_err *err);

/* Pointer to a local block's slot (NULL when not local or synthetic). */
const uint8_t *us_store_block(const us_store *s, size_t index, uint64_t block);

/* Result of a verification pass over the opened shard(s). */
typedef struct us_verify_report {
    uint64_t blocks_checked;
    uint64_t blocks_bad;
    uint64_t bytes_checked;
} us_verify_report;

/* Checks every local block's CRC (any backend). Each bad block is printed
 * to stderr naming table, block and file when print_each is set; the first
 * one is also in *err. Returns US_OK or US_ECORRUPT. */
int us_store_verify(const us_store *s, bool print_each, us_verify_report *report, us_err *err);

/* Resident bytes of this open store (RAM copies; mmap counts file bytes). */
uint64_t us_store_local_bytes(const us_store *s);

#endif
