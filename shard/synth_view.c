/* synth_view.c — materialise a shard's part of a synthetic table (see synth_view.h). */
#include "shard/synth_view.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/column.h"
#include "proto/placement.h"
#include "shard/synthetic.h"

int us_synth_view_build(us_synth_view *sv, const us_synth_spec *sp, us_err *err)
{
    memset(sv, 0, sizeof *sv);
    size_t elem = us_dtype_size(sp->dtype);
    if (sp->dim == 0 || elem == 0 || sp->rows == 0 || sp->block_bits > 30 ||
        sp->n_shards < 1 || sp->shard_index < -1 || sp->shard_index >= sp->n_shards)
        return us_err_set(err, US_EINVAL, "synthetic view of table %u: bad shape (dim %u, "
                          "rows %" PRIu64 ", block_bits %u, shard %d of %d)", sp->table_id,
                          sp->dim, sp->rows, sp->block_bits, sp->shard_index, sp->n_shards);
    uint32_t begin = 0, cols = sp->dim;
    bool whole = sp->shard_index < 0;
    if (sp->column && !whole) {
        if (sp->dim < (uint32_t)sp->n_shards)
            return us_err_set(err, US_EINVAL, "synthetic view of table %u: column placement "
                              "needs dim %u >= %d shards", sp->table_id, sp->dim,
                              sp->n_shards);
        us_column_slice(sp->dim, sp->n_shards, sp->shard_index, &begin, &cols);
    }
    bool int8 = sp->dtype == US_DTYPE_INT8;
    uint64_t rows_per_block = 1ull << sp->block_bits;
    uint64_t n_blocks = (sp->rows + rows_per_block - 1) >> sp->block_bits;
    uint64_t row_bytes = (uint64_t)cols * elem;
    int rc = US_OK;
    sv->blocks = calloc(n_blocks, sizeof *sv->blocks);
    sv->scales = calloc(n_blocks, sizeof *sv->scales);
    uint8_t *full = malloc((size_t)sp->dim * elem);
    if (!sv->blocks || !sv->scales || !full) {
        rc = us_err_set(err, US_ENOMEM, "synthetic view: tables for %" PRIu64 " blocks",
                        n_blocks);
        goto fail;
    }
    sv->view.n_blocks = n_blocks;   /* so a failure below frees what was built */
    for (uint64_t b = 0; b < n_blocks; b++) {
        if (!whole && !sp->column &&
            us_placement_shard(sp->table_id, b, sp->placement_seed, sp->n_shards) !=
                sp->shard_index)
            continue;
        uint64_t first = b << sp->block_bits;
        uint64_t n = sp->rows - first < rows_per_block ? sp->rows - first : rows_per_block;
        uint64_t bytes = (row_bytes * rows_per_block + 63) & ~(uint64_t)63;
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0 ||
            (int8 && (sv->scales[b] = calloc(rows_per_block, sizeof(float))) == NULL)) {
            free(p);
            rc = us_err_set(err, US_ENOMEM, "synthetic view: block %" PRIu64, b);
            goto fail;
        }
        memset(p, 0, bytes);
        sv->blocks[b] = p;
        sv->held_blocks++;
        sv->bytes += bytes + (int8 ? rows_per_block * sizeof(float) : 0);
        for (uint64_t i = 0; i < n; i++) {
            float scale = 0.0f;
            rc = us_synth_row(full, &scale, sp->dtype, sp->synth_seed, sp->table_id,
                              first + i, sp->dim, err);
            if (rc != US_OK)
                goto fail;
            memcpy(sv->blocks[b] + i * row_bytes, full + (size_t)begin * elem, row_bytes);
            if (int8)
                sv->scales[b][i] = scale;
        }
    }
    free(full);
    sv->view = (us_rows_view){
        .dtype = sp->dtype, .dim = cols, .block_bits = sp->block_bits,
        .row_stride_bytes = row_bytes, .rows = sp->rows, .n_blocks = n_blocks,
        .blocks = (const uint8_t *const *)sv->blocks,
        .block_scales = int8 ? (const float *const *)sv->scales : NULL,
    };
    return US_OK;

fail:
    free(full);
    us_synth_view_free(sv);
    return rc;
}

void us_synth_view_free(us_synth_view *sv)
{
    for (uint64_t b = 0; sv->blocks && b < sv->view.n_blocks; b++)
        free(sv->blocks[b]);
    for (uint64_t b = 0; sv->scales && b < sv->view.n_blocks; b++)
        free(sv->scales[b]);
    free(sv->blocks);
    free(sv->scales);
    memset(sv, 0, sizeof *sv);
}
