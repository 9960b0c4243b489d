/* synthetic.c — values as a pure function of (seed, table, row, col); see synthetic.h. */
#include "shard/synthetic.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/hash.h"
#include "shard/rowcodec.h"

uint64_t us_synth_row_hash(uint64_t seed, uint32_t table_id, uint64_t row)
{
    uint64_t h = us_splitmix64_mix(seed ^ 0x5ca1ab1e0ddba11ull);
    h = us_splitmix64_mix(h + ((uint64_t)table_id + 1) * US_SPLITMIX64_GAMMA);
    return us_splitmix64_mix(h ^ row);
}

static inline float value_from(uint64_t h, uint32_t col)
{
    uint64_t x = us_splitmix64_mix(h + ((uint64_t)col + 1) * US_SPLITMIX64_GAMMA);
    return (float)(x >> 40) * 0x1p-23f - 1.0f;
}

float us_synth_value(uint64_t seed, uint32_t table_id, uint64_t row, uint32_t col)
{
    return value_from(us_synth_row_hash(seed, table_id, row), col);
}

void us_synth_row_f32(float *out, uint64_t seed, uint32_t table_id, uint64_t row, uint32_t dim)
{
    uint64_t h = us_synth_row_hash(seed, table_id, row);
    for (uint32_t c = 0; c < dim; c++)
        out[c] = value_from(h, c);
}

int us_synth_row(void *out, float *scale, us_dtype dtype, uint64_t seed, uint32_t table_id,
                 uint64_t row, uint32_t dim, us_err *err)
{
    if (dim == 0 || dim > US_SYNTH_MAX_DIM || us_dtype_name(dtype) == NULL)
        return us_err_set(err, US_EINVAL, "synthetic table %u: dim %u (1..%u) or dtype %d "
                          "invalid", table_id, dim, US_SYNTH_MAX_DIM, (int)dtype);
    uint64_t h = us_synth_row_hash(seed, table_id, row);
    uint8_t *dst = out;
    switch (dtype) {
    case US_DTYPE_F32:
        us_synth_row_f32(out, seed, table_id, row, dim);
        return US_OK;
    case US_DTYPE_BF16:
    case US_DTYPE_F16:
        for (uint32_t c = 0; c < dim; c++) {
            float v = value_from(h, c);
            uint16_t bits = dtype == US_DTYPE_BF16 ? us_f32_to_bf16(v) : us_f32_to_f16(v);
            memcpy(dst + 2 * c, &bits, 2);
        }
        return US_OK;
    case US_DTYPE_INT8:
        break;
    }
    if (scale == NULL)
        return us_err_set(err, US_EINVAL, "synthetic table %u: int8 row needs a scale", table_id);
    /* int8 needs the whole f32 row first (its max sets the scale) */
    float stack[1024];
    float *tmp = dim <= 1024 ? stack : malloc(dim * sizeof *tmp);
    if (tmp == NULL)
        return us_err_set(err, US_ENOMEM, "synthetic table %u: row of %u", table_id, dim);
    us_synth_row_f32(tmp, seed, table_id, row, dim);
    int rc = us_rows_encode(out, scale, dtype, tmp, US_DTYPE_F32, 1, dim, row, err);
    if (tmp != stack)
        free(tmp);
    return rc;
}
