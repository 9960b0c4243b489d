/* synth_view.c — materialise a shard's part of a synthetic table (see synth_view.h). */
#include "shard/synth_view.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/column.h"
#include "proto/placement.h"
#include "shard/synthetic.h"

/* Shape checks shared by the view and the source; sets the served columns. */
static int check_spec(const us_synth_spec *sp, uint32_t *begin, uint32_t *cols, us_err *err)
{
    size_t elem = us_dtype_size(sp->dtype);
    if (sp->dim == 0 || elem == 0 || sp->rows == 0 || sp->block_bits > 30 ||
        sp->n_shards < 1 || sp->shard_index < -1 || sp->shard_index >= sp->n_shards)
        return us_err_set(err, US_EINVAL, "synthetic view of table %u: bad shape (dim %u, "
                          "rows %" PRIu64 ", block_bits %u, shard %d of %d)", sp->table_id,
                          sp->dim, sp->rows, sp->block_bits, sp->shard_index, sp->n_shards);
    *begin = 0;
    *cols = sp->dim;
    if (sp->column && sp->shard_index >= 0) {
        if (sp->dim < (uint32_t)sp->n_shards)
            return us_err_set(err, US_EINVAL, "synthetic view of table %u: column placement "
                              "needs dim %u >= %d shards", sp->table_id, sp->dim,
                              sp->n_shards);
        us_column_slice(sp->dim, sp->n_shards, sp->shard_index, begin, cols);
    }
    return US_OK;
}

/* Row placement: the blocks placement assigns to this shard; column
 * placement and the whole table: every block. */
static bool block_held(const us_synth_spec *sp, uint64_t b)
{
    return sp->shard_index < 0 || sp->column ||
           us_placement_shard(sp->table_id, b, sp->placement_seed, sp->n_shards) ==
               sp->shard_index;
}

/* Sizes of one held block's rows and (int8) scales, each 64-byte aligned. */
static void block_sizes(const us_synth_spec *sp, uint64_t row_bytes, uint64_t *rows_b,
                        uint64_t *scales_b)
{
    uint64_t per = 1ull << sp->block_bits;
    *rows_b = (row_bytes * per + 63) & ~(uint64_t)63;
    *scales_b = sp->dtype == US_DTYPE_INT8 ? (per * sizeof(float) + 63) & ~(uint64_t)63 : 0;
}

/* Writes block b's rows (and scales); full is scratch for one whole row. */
static int fill_block(us_synth_view *sv, const us_synth_spec *sp, uint64_t b, uint32_t begin,
                      uint64_t row_bytes, uint8_t *full, us_err *err)
{
    size_t elem = us_dtype_size(sp->dtype);
    uint64_t first = b << sp->block_bits, per = 1ull << sp->block_bits;
    uint64_t n = sp->rows - first < per ? sp->rows - first : per;
    for (uint64_t i = 0; i < n; i++) {
        float scale = 0.0f;
        int rc = us_synth_row(full, &scale, sp->dtype, sp->synth_seed, sp->table_id,
                              first + i, sp->dim, err);
        if (rc != US_OK)
            return rc;
        memcpy(sv->blocks[b] + i * row_bytes, full + (size_t)begin * elem, row_bytes);
        if (sv->scales[b])
            sv->scales[b][i] = scale;
    }
    return US_OK;
}

int us_synth_view_build(us_synth_view *sv, const us_synth_spec *sp, us_err *err)
{
    memset(sv, 0, sizeof *sv);
    sv->region.fd = -1;
    uint32_t begin, cols;
    int rc = check_spec(sp, &begin, &cols, err);
    if (rc != US_OK)
        return rc;
    bool int8 = sp->dtype == US_DTYPE_INT8;
    uint64_t n_blocks = (sp->rows + (1ull << sp->block_bits) - 1) >> sp->block_bits;
    uint64_t row_bytes = (uint64_t)cols * us_dtype_size(sp->dtype), rows_b, scales_b;
    block_sizes(sp, row_bytes, &rows_b, &scales_b);
    for (uint64_t b = 0; b < n_blocks; b++)
        sv->held_blocks += block_held(sp, b);
    sv->bytes = sv->held_blocks * (rows_b + scales_b);
    sv->blocks = calloc(n_blocks, sizeof *sv->blocks);
    sv->scales = calloc(n_blocks, sizeof *sv->scales);
    uint8_t *full = malloc((size_t)sp->dim * us_dtype_size(sp->dtype));
    if (!sv->blocks || !sv->scales || !full) {
        rc = us_err_set(err, US_ENOMEM, "synthetic view: tables for %" PRIu64 " blocks",
                        n_blocks);
        goto fail;
    }
    if (sv->bytes > 0 &&
        (rc = us_shmem_alloc(&sv->region, sv->bytes, "ultrashard-synth", err)) != US_OK)
        goto fail;
    for (uint64_t b = 0, k = 0; b < n_blocks; b++) {
        if (!block_held(sp, b))
            continue;
        sv->blocks[b] = sv->region.base + k++ * (rows_b + scales_b);
        sv->scales[b] = int8 ? (float *)(void *)(sv->blocks[b] + rows_b) : NULL;
        if ((rc = fill_block(sv, sp, b, begin, row_bytes, full, err)) != US_OK)
            goto fail;
    }
    free(full);
    sv->view = (us_rows_view){
        .dtype = sp->dtype, .dim = cols, .block_bits = sp->block_bits,
        .row_stride_bytes = row_bytes, .rows = sp->rows, .n_blocks = n_blocks,
        .blocks = (const uint8_t *const *)sv->blocks,
        .block_scales = int8 ? (const float *const *)sv->scales : NULL,
        .share_base = sv->region.fd >= 0 ? sv->region.base : NULL,
        .share_bytes = sv->region.fd >= 0 ? sv->region.bytes : 0,
        .share_fd = sv->region.fd,
    };
    return US_OK;

fail:
    free(full);
    us_synth_view_free(sv);
    return rc;
}

void us_synth_view_free(us_synth_view *sv)
{
    us_shmem_free(&sv->region);
    free(sv->blocks);
    free(sv->scales);
    memset(sv, 0, sizeof *sv);
    sv->region.fd = -1;
}

int us_synth_source_init(us_synth_source *src, const us_synth_spec *sp, us_err *err)
{
    memset(src, 0, sizeof *src);
    int rc = check_spec(sp, &src->col_begin, &src->cols, err);
    if (rc != US_OK)
        return rc;
    src->spec = *sp;
    src->n_blocks = ((sp->rows - 1) >> sp->block_bits) + 1;
    src->held = malloc(src->n_blocks);
    src->full = malloc((size_t)sp->dim * us_dtype_size(sp->dtype));
    if (src->held == NULL || src->full == NULL) {
        us_synth_source_free(src);
        return us_err_set(err, US_ENOMEM, "synthetic source of table %u: %" PRIu64 " blocks",
                          sp->table_id, src->n_blocks);
    }
    for (uint64_t b = 0; b < src->n_blocks; b++)
        src->held[b] = block_held(sp, b);
    return US_OK;
}

int us_synth_source_rows(us_synth_source *src, void *out, float *scales, const uint64_t *rows,
                         uint64_t n, us_err *err)
{
    const us_synth_spec *sp = &src->spec;
    size_t elem = us_dtype_size(sp->dtype), row_bytes = (size_t)src->cols * elem;
    bool slice = src->cols != sp->dim, int8 = sp->dtype == US_DTYPE_INT8;
    if (int8 && scales == NULL)
        return us_err_set(err, US_EINVAL, "synthetic source of table %u: int8 rows need "
                          "scales", sp->table_id);
    uint8_t *dst = out;
    for (uint64_t i = 0; i < n; i++, dst += row_bytes) {
        float scale = 0.0f;
        /* a slice is cut from the full row: int8 scales are the full row's */
        int rc = us_synth_row(slice ? src->full : dst, &scale, sp->dtype, sp->synth_seed,
                              sp->table_id, rows[i], sp->dim, err);
        if (rc != US_OK)
            return rc;
        if (slice)
            memcpy(dst, src->full + (size_t)src->col_begin * elem, row_bytes);
        if (int8)
            scales[i] = scale;
    }
    return US_OK;
}

void us_synth_source_free(us_synth_source *src)
{
    free(src->held);
    free(src->full);
    memset(src, 0, sizeof *src);
}

int us_synth_batch_fill(us_synth_batch *b, us_synth_source *src, const uint64_t *rows,
                        uint64_t n, us_err *err)
{
    us_dtype dt = src->spec.dtype;
    size_t row_bytes = (size_t)src->cols * us_dtype_size(dt);
    if (n > b->cap) {
        free(b->data);
        free(b->scales);
        void *p = NULL;
        b->data = posix_memalign(&p, 64, n * row_bytes + 64) == 0 ? p : NULL;
        b->scales = malloc(n * sizeof(float));
        b->cap = b->data && b->scales ? n : 0;
        if (b->cap == 0)
            return us_err_set(err, US_ENOMEM, "synthetic table %u: scratch for %" PRIu64
                              " rows", src->spec.table_id, n);
    }
    uint32_t bits = 0;
    while ((1ull << bits) < n)
        bits++;
    b->blk[0] = b->data;
    b->sc[0] = b->scales;
    b->view = (us_rows_view){ .dtype = dt, .dim = src->cols, .block_bits = bits,
                              .row_stride_bytes = row_bytes, .rows = n, .n_blocks = 1,
                              .blocks = b->blk, .block_scales = b->sc };
    return us_synth_source_rows(src, b->data, b->scales, rows, n, err);
}

void us_synth_batch_free(us_synth_batch *b)
{
    free(b->data);
    free(b->scales);
    memset(b, 0, sizeof *b);
}
