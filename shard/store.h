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
 *                                 after a 4096-byte identity header
 * Several tables (memory layers) live in one store. Block b of a table
 * belongs to shard jump_hash(mix64(table, b, seed), shard_count)
 * (proto/placement.h): there is no block directory to consult, and a shard
 * serves its blocks only from its own files. Each file is a 4096-byte
 * header slot, then a run of 4096-byte-aligned slots, one per owned block in
 * ascending block id order, so a block is one aligned extent that mmap
 * exposes as-is. The header (manifest.h, us_shard_header) names the store
 * (a random 128-bit id drawn at creation, also in the manifest), the table,
 * the shard, the block count and the format, under its own CRC-32C.
 * Format 1 stores (before the header) still open: their files' identity
 * is unchecked (block CRCs still catch a swapped file on use) and
 * `ultrashard inspect` says so.
 *
 * Writes are crash-safe: every file is written to a temp name, fsync-ed,
 * renamed, and the directory fsync-ed (durable.h); a new store is built in
 * "<dir>.partial" and renamed to <dir> only when complete, so a crash or
 * error never leaves a half store under the real name and never touches an
 * existing store (import/reshard refuse to overwrite one).
 *
 * Backends, chosen per open:
 *     RAM        each local shard file is read into one 4 KiB-aligned
 *                allocation; every block's CRC is checked at open (the
 *                bytes pass through the CPU anyway).
 *     MMAP       each local shard file is mmap-ed read-only (MAP_SHARED);
 *                pages load on demand, so tables larger than RAM work.
 *     synthetic  tables flagged synthetic in the manifest have no files:
 *                rows are computed from (seed, table, row, col)
 *                (synthetic.h), so 1e9..1e11-row tables cost nothing.
 *
 * What is checked when:
 *     always on open   manifest CRC, version and fields; shard count equals
 *                      the caller's expectation (if given); per table, the
 *                      ShardFile block lists equal the placement; every
 *                      local shard file exists, is a regular file, has
 *                      exactly the manifest's size (a truncated file is
 *                      refused naming table, first missing block and file)
 *                      and (format 2) a header naming this store, table and
 *                      shard (a swapped, zeroed or foreign file is refused
 *                      naming the file and what differs).
 *     block CRCs       a block is never served before its CRC-32C has been
 *                      checked. When depends on opts.check:
 *                        OPEN       every local block at open, in parallel
 *                                   (RAM backend and verify = true always);
 *                        FIRST_USE  each block the first time a row of it
 *                                   is asked for (us_store_check_rows; the
 *                                   result is remembered per block, set with
 *                                   atomics, so concurrent callers are safe);
 *                        AUTO       OPEN when the local files total at most
 *                                   US_STORE_CHECK_OPEN_MAX_BYTES, else
 *                                   FIRST_USE; the environment variable
 *                                   US_STORE_CHECK=open|first-use overrides
 *                                   AUTO (tests, measurements).
 * A corrupt block is never served: the open (OPEN) or the request
 * (FIRST_USE) fails with US_ECORRUPT naming the table, the block and the
 * file, and the block stays refused. Serving code must pass the rows of
 * a request through us_store_check_rows before reading them from a view
 * (shard/serve.h us_server_attach_store, the in-process model backend),
 * and call us_store_check_table before exposing a view to one-sided reads,
 * which cannot be checked per read. us_store_read_row checks by itself.
 * A long-running shard may re-check blocks at a bounded rate with
 * us_store_scrub_step (a block damaged after its first check is then
 * refused from the next request on).
 *
 * Returned pointers (us_store_view blocks, us_store_block) point straight into
 * the RAM copy or the mapping: zero copy, read-only, valid until
 * us_store_close(). A block not held by the opened shard(s) is NULL.
 * The store is immutable once open; any number of threads may read and
 * call the us_store_check_* functions; us_store_scrub_step is called by one
 * thread, between requests.
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

typedef enum us_store_check_policy {
    US_STORE_CHECK_AUTO = 0,       /* OPEN for small local stores, else FIRST_USE */
    US_STORE_CHECK_OPEN = 1,
    US_STORE_CHECK_FIRST_USE = 2,
} us_store_check_policy;

/* AUTO's switch point. Checking at open costs one pass over the local
 * bytes before the first request (measured: see README, store integrity);
 * below this a restart stays well under a second and no request pays a
 * first-use check; above it the open would dominate a restart, so blocks
 * are checked as the first requests touch them. */
#define US_STORE_CHECK_OPEN_MAX_BYTES (256ull << 20)

typedef struct us_store_opts {
    us_backend backend;
    int  shard_index;       /* the shard whose files to open, or US_STORE_ALL_SHARDS */
    int  expect_shards;     /* > 0: refuse a store with another shard count */
    bool verify;            /* check every local block's CRC at open */
    us_store_check_policy check;   /* when block CRCs are checked (contract above) */
} us_store_opts;

typedef struct us_store us_store;

/* Opens store `dir` per the contract above. Returns: US_OK and *out, or
 * US_ENOTFOUND (no manifest / missing shard file), US_ECORRUPT (manifest,
 * file size, file header, or a block CRC when checked at open),
 * US_EVERSION, US_EINVAL (shard count mismatch, bad options), US_EIO,
 * US_ENOMEM. */
int  us_store_open(const char *dir, const us_store_opts *opts, us_store **out, us_err *err);
/* Unmaps/frees everything; NULL is a no-op. Returns: nothing. */
void us_store_close(us_store *s);

/* Returns: the manifest read at open (owned by the store). */
const us_manifest *us_store_manifest(const us_store *s);
/* Returns: the directory the store was opened from (owned by the store). */
const char *us_store_dir(const us_store *s);

/* Index of table `name` (or its decimal id).
 * Returns: US_OK and *index, or US_ENOTFOUND naming the table. */
int us_store_find_table(const us_store *s, const char *name, size_t *index, us_err *err);

/* Fills *view for table `index` (pointers owned by the store).
 * Returns: US_OK; US_ERANGE for a bad index; US_EUNSUPP for a synthetic
 * table (no bytes to point to: use us_store_read_row). */
int us_store_view(const us_store *s, size_t index, us_rows_view *view, us_err *err);

/* Returns: whether row is held by the opened shard(s) (synthetic: always). */
bool us_store_has_row(const us_store *s, size_t index, uint64_t row);

/* Copies one row in the table's dtype into out (row_bytes) and, for int8,
 * its scale into *scale. Works for every backend, synthetic included.
 * Returns: US_OK; US_ERANGE for a row beyond the table, US_ENOTFOUND if not
 * local, US_ECORRUPT if its block fails its CRC check. */
int us_store_read_row(const us_store *s, size_t index, uint64_t row, void *out,
                      float *scale, us_err *err);

/* Unchecked: a caller serving its bytes checks it first (contract above).
 * Returns: a pointer to a local block's slot, NULL when not local or
 * synthetic. */
const uint8_t *us_store_block(const us_store *s, size_t index, uint64_t block);

/* Makes sure every local block holding one of rows[0..n) of table `index`
 * has passed its CRC check, checking the ones not yet checked (in
 * parallel). Rows out of range or not local are skipped (the caller
 * refuses them). Returns: US_OK, US_ECORRUPT naming table, block and file
 * of the first bad block (every bad one is remembered and refused on later
 * calls), or US_ENOMEM. */
int us_store_check_rows(const us_store *s, size_t index, const uint64_t *rows, size_t n,
                        us_err *err);

/* The same for every local block of table `index` (before exposing it to
 * one-sided reads). Returns: US_OK, US_ECORRUPT, US_ERANGE (bad index),
 * US_ENOMEM. */
int us_store_check_table(const us_store *s, size_t index, us_err *err);

typedef struct us_scrub_report {
    uint64_t blocks_checked, blocks_bad, bytes_checked;
    bool     wrapped;       /* the pass reached the last local block */
} us_scrub_report;

/* Background scrub: re-checks the next local blocks (round robin over
 * tables and files, good blocks included: a page may have changed on disk
 * since) until about max_bytes of slots were read. Each bad block is
 * reported on stderr naming table, block and file and is refused on use
 * from then on; later passes skip it (reported once). Returns: US_OK, or US_ECORRUPT (first bad block in *err). */
int us_store_scrub_step(us_store *s, uint64_t max_bytes, us_scrub_report *report,
                        us_err *err);

/* Result of a verification pass over the opened shard(s). */
typedef struct us_verify_report {
    uint64_t blocks_checked;
    uint64_t blocks_bad;
    uint64_t bytes_checked;
} us_verify_report;

/* Checks every local block's CRC (any backend). Each bad block is printed
 * to stderr naming table, block and file when print_each is set; the first
 * one is also in *err. Returns: US_OK or US_ECORRUPT. */
int us_store_verify(const us_store *s, bool print_each, us_verify_report *report, us_err *err);

/* Returns: the resident bytes of this open store (RAM copies; mmap counts
 * file bytes). */
uint64_t us_store_local_bytes(const us_store *s);

#endif
