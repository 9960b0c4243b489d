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
} us_import_opts;

typedef struct us_import_stats {
    uint64_t bytes_read;      /* all ranks: tensor bytes read */
    uint64_t bytes_written;   /* all ranks: shard file bytes */
    uint64_t blocks;          /* all ranks */
    double   seconds;         /* wall time of the slowest rank */
    uint64_t resumed_files;   /* shard files kept from a crashed run (all ranks) */
} us_import_stats;

int us_import(MPI_Comm comm, const us_import_opts *opts, const us_import_table *tables,
              size_t n_tables, us_import_stats *stats, us_err *err);

/* Compares every local row of table `table_index` of an open store with the
 * tensor rows of `path`/`tensor`, converted exactly as us_import stores them
 * (same dtype: bytes must be identical). US_ECORRUPT naming the first row
 * that differs; *rows_compared counts the rows checked. Not collective. */
struct us_store;
int us_import_compare(const struct us_store *store, size_t table_index, const char *path,
                      const char *tensor, uint64_t *rows_compared, us_err *err);

#endif
