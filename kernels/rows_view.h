/*
 * rows_view.h — how kernels see a table's rows without owning them.
 *
 * A table is stored as blocks of 2^block_bits consecutive rows. A view holds
 * one base pointer per block, so blocks can live anywhere: in one RAM array,
 * scattered through an mmap-ed shard file, or absent (NULL: not local to
 * this rank). Row r lives at
 *     blocks[r >> block_bits] + (r & ((1 << block_bits) - 1)) * row_stride_bytes
 * and, for int8 tables, its f32 scale at
 *     block_scales[r >> block_bits][r & ((1 << block_bits) - 1)].
 * The view borrows all memory: pointers stay valid as long as the owner (a
 * shard store or a test array) is open; kernels never free or write them.
 */
#ifndef US_ROWS_VIEW_H
#define US_ROWS_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"

typedef struct us_rows_view {
    us_dtype dtype;
    uint32_t dim;                   /* elements per row */
    uint32_t block_bits;            /* rows per block = 1 << block_bits */
    size_t   row_stride_bytes;      /* >= dim * dtype size */
    uint64_t rows;                  /* valid row ids are [0, rows) */
    uint64_t n_blocks;              /* ceil(rows / 2^block_bits) */
    const uint8_t *const *blocks;   /* [n_blocks]; NULL = block not present here */
    const float *const *block_scales; /* int8 only: [n_blocks] per-row scales */
    /* Where the blocks (and scales) live when other processes of this host
     * can map them (proto/shmem.h): share_bytes from share_base, behind
     * fd share_fd of this process. share_bytes 0: private memory. */
    const uint8_t *share_base;
    uint64_t share_bytes;
    int      share_fd;
} us_rows_view;

/* Returns: the address of row `row`, or NULL when its block is not present
 * here. The caller has checked row < v->rows (no bounds check: hot path). */
static inline const uint8_t *us_rows_view_row(const us_rows_view *v, uint64_t row)
{
    const uint8_t *base = v->blocks[row >> v->block_bits];
    if (base == NULL)
        return NULL;
    return base + (row & ((1ull << v->block_bits) - 1)) * v->row_stride_bytes;
}

/* Returns: the int8 scale of row `row`; the caller has checked the row and
 * that v->block_scales and its block are present. */
static inline float us_rows_view_scale(const us_rows_view *v, uint64_t row)
{
    return v->block_scales[row >> v->block_bits][row & ((1ull << v->block_bits) - 1)];
}

#endif
