/*
 * synth_view.h — one shard's part of a synthetic table, materialised in RAM.
 *
 * Synthetic tables (shard/synthetic.h) have no bytes to point to, but the
 * gather kernel and one-sided reads need real rows. This builds a
 * us_rows_view holding exactly what one shard would serve:
 *   row placement     the blocks placement assigns to this shard (others NULL)
 *   column placement  every block, with only this shard's column slice
 *   whole table       shard_index = -1: every block, every column (the
 *                     single-process reference)
 * Values equal us_synth_row() (int8 scales are those of the full row, so a
 * column slice dequantises exactly like the whole row). All held blocks
 * (each 64-byte aligned) and scale arrays sit in one region that other
 * processes of this host can map (proto/shmem.h; the view's share_*
 * fields say where), so coordinators can read them one-sided by plain
 * loads. The view's row stride is the packed row size. The synth_view owns
 * everything; the view is valid until freed.
 */
#ifndef US_SYNTH_VIEW_H
#define US_SYNTH_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "proto/shmem.h"
#include "kernels/us_status.h"

typedef struct us_synth_spec {
    us_dtype dtype;
    uint64_t synth_seed;
    uint32_t table_id;
    uint64_t rows;
    uint32_t dim;
    uint32_t block_bits;
    uint64_t placement_seed;
    bool     column;          /* column placement */
    int      n_shards;
    int      shard_index;     /* -1 = the whole table */
} us_synth_spec;

typedef struct us_synth_view {
    us_rows_view view;
    us_shmem  region;         /* owned: every held block and scale array */
    uint8_t **blocks;         /* [n_blocks], into region */
    float   **scales;         /* [n_blocks] (int8), into region */
    uint64_t  held_blocks;
    uint64_t  bytes;          /* memory held by rows and scales */
} us_synth_view;

/* Builds the view. US_EINVAL for bad shapes (dim 0, column placement with
 * dim < n_shards, shard out of range), US_ENOMEM.
 * Returns: US_OK; US_EINVAL for bad shapes; US_ENOMEM.
 */
int us_synth_view_build(us_synth_view *sv, const us_synth_spec *spec, us_err *err);
/* Returns: nothing; safe on a zeroed view. */
void us_synth_view_free(us_synth_view *sv);

/*
 * The same part of a synthetic table with nothing materialised: a shard (or
 * the single-process baseline) computes each requested row from (seed,
 * table, row) when it is asked for, so a 1e11-value table costs one byte
 * per block here (which blocks are held) instead of 200 GB. Rows come out
 * byte-identical to the synth_view of the same spec (same columns, same
 * int8 scales; tested), so sums over them are bit-identical too.
 */
typedef struct us_synth_source {
    us_synth_spec spec;
    uint32_t col_begin, cols; /* the columns served (column placement: a slice) */
    uint64_t n_blocks;
    uint8_t *held;            /* owned, [n_blocks]: 1 = block served here */
    uint8_t *full;            /* owned scratch: one full row in the stored dtype */
} us_synth_source;

/* Builds the source (same checks as us_synth_view_build).
 * Returns: US_OK; US_EINVAL for bad shapes; US_ENOMEM. */
int us_synth_source_init(us_synth_source *src, const us_synth_spec *spec, us_err *err);

/* Returns: whether row (< spec.rows, unchecked) is in a block held here. */
static inline bool us_synth_source_holds(const us_synth_source *src, uint64_t row)
{
    return src->held[row >> src->spec.block_bits] != 0;
}

/* Writes rows[0..n-1] packed (cols elements each) to out, and for int8
 * their scales (of the full row) to scales. Rows are not checked against
 * the table here (the server checked them).
 * Returns: US_OK; US_EINVAL for int8 without scales. */
int us_synth_source_rows(us_synth_source *src, void *out, float *scales, const uint64_t *rows,
                         uint64_t n, us_err *err);

/* Returns: nothing; safe on a zeroed source. */
void us_synth_source_free(us_synth_source *src);

/* A batch of computed rows seen as a table: after us_synth_batch_fill,
 * view holds rows[0..n-1] of the source as its rows 0..n-1 (one block), so
 * the gather kernels run over them unchanged with row ids replaced by the
 * index into rows. Scratch grows on demand; zero-initialise, then fill any
 * number of times. view points into the struct: do not copy it. */
typedef struct us_synth_batch {
    us_rows_view view;
    uint8_t *data;            /* owned: packed rows, 64-byte aligned */
    float   *scales;          /* owned: int8 scales */
    uint64_t cap;             /* rows */
    const uint8_t *blk[1];
    const float   *sc[1];
} us_synth_batch;

/* Returns: US_OK; US_ENOMEM; errors of us_synth_source_rows. */
int us_synth_batch_fill(us_synth_batch *b, us_synth_source *src, const uint64_t *rows,
                        uint64_t n, us_err *err);
/* Returns: nothing; the batch is zeroed. */
void us_synth_batch_free(us_synth_batch *b);

#endif
