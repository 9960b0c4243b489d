/*
 * import.h — build a store from tensor files, in parallel under MPI.
 *
 * us_import() is collective over `comm`: every rank validates all inputs
 * (headers only), then rank r writes the shard files of the shards
 * s = r, r + size, r + 2*size, ... reading only the rows of the blocks those
 * shards own (pread at the blocks' offsets), converting each block to the
 * stored dtype and checksumming it. Block CRCs are combined with one
 * MPI_Allreduce (each block is written by exactly one rank), and rank 0
 * writes the manifest and commits the staged directory (store_write.h).
 * One table per input tensor; tables may also be synthetic (no input).
 *
 * Every phase ends with an agreement (MPI_Allreduce MINLOC of the status),
 * so a failure on any rank fails every rank with the same code: the failing
 * rank's message names the file/tensor/table; the others say which rank
 * failed. On failure nothing is left under out_dir (the stage is removed);
 * an existing out_dir is never touched (US_EEXIST).
 *
 * Restart after a crash: the same command (same inputs, unchanged files,
 * same options) resumes: shard files committed before the crash are kept
 * and only checksummed, the rest are written (store_write.h, import.plan).
 *
 * All ranks write into one staging directory, so out_dir must be on a file
 * system every rank sees (one host, or a shared file system across hosts).
 *
 * The library changes no process-wide state: a caller that wants a file size
 * limit (RLIMIT_FSIZE, a full disk in tests) reported as US_EIO rather than
 * a SIGXFSZ kill ignores that signal itself (us_durable_ignore_sigxfsz; the
 * `ultrashard import` command does).
 */
#ifndef US_IMPORT_H
#define US_IMPORT_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"

typedef struct us_import_table {
    const char *name;         /* table name in the store */
    const char *path;         /* tensor file (.npy / safetensors); NULL if synthetic */
    const char *tensor;       /* tensor name in the file; NULL = the file's only tensor */
    bool        synthetic;    /* no input: rows x dim computed from synthetic_seed */
    uint64_t    rows;         /* synthetic only */
    uint32_t    dim;          /* synthetic only */
} us_import_table;

typedef struct us_import_opts {
    const char *out_dir;
    uint32_t    shards;          /* shard count of the new store (>= 1) */
    uint32_t    block_bits;      /* rows per block = 2^block_bits */
    uint64_t    placement_seed;
    uint64_t    synthetic_seed;
    bool        keep_dtype;      /* store each tensor in its own dtype ... */
    us_dtype    dtype;           /* ... or convert to this one (int8: quantise) */
    bool        progress;        /* rank 0 prints progress lines to stderr */
    /* Test seam, NULL in normal use: called on the writing rank after each
     * shard file it writes (not one kept from a crashed run) is committed,
     * with the count so far. The CLI's fault hook kills the process here to
     * simulate a crash between files (tests/integration/store_resume.sh). */
    void      (*after_file_written)(void *ctx, int files_written);
    void       *after_file_ctx;
} us_import_opts;

typedef struct us_import_stats {
    uint64_t bytes_read;      /* all ranks: tensor bytes read */
    uint64_t bytes_written;   /* all ranks: shard file bytes */
    uint64_t blocks;          /* all ranks */
    double   seconds;         /* wall time of the slowest rank */
    uint64_t resumed_files;   /* shard files kept from a crashed run (all ranks) */
} us_import_stats;

/* Builds the store opts->out_dir from tables[n_tables]; collective over comm.
 * *stats (optional) gets totals over all ranks, also after a failure.
 * Returns: US_OK; US_EINVAL for bad options or tables (named); US_EEXIST if
 * out_dir exists; from the inputs US_ENOTFOUND / US_EIO / US_ECORRUPT /
 * US_EUNSUPP naming file and tensor; US_EIO for write failures (a full disk
 * included); US_ENOMEM; US_EMPI; on ranks that did not fail, the failing
 * rank's code with a message naming that rank. */
int us_import(MPI_Comm comm, const us_import_opts *opts, const us_import_table *tables,
              size_t n_tables, us_import_stats *stats, us_err *err);

/* Compares every local row of table `table_index` of an open store with the
 * tensor rows of `path`/`tensor`, converted exactly as us_import stores them
 * (same dtype: bytes must be identical). US_ECORRUPT naming the first row
 * that differs; *rows_compared counts the rows checked. Not collective.
 * Returns: US_OK; US_ECORRUPT naming the first differing row; US_ERANGE for a
 * table index out of range; US_EINVAL for a synthetic table or a tensor of
 * another shape; errors of us_tf_open / us_tf_read_rows naming the file;
 * US_ENOMEM. */
struct us_store;
int us_import_compare(const struct us_store *store, size_t table_index, const char *path,
                      const char *tensor, uint64_t *rows_compared, us_err *err);

#endif
