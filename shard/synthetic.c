/* synthetic.c — values as a pure function of (seed, table, row, col); see synthetic.h. */
#include "shard/synthetic.h"

#include "shard/rowcodec.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
#define US_SYNTH_MAX_STACK_DIM 4096

static inline uint64_t finalise(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t us_synth_row_hash(uint64_t seed, uint32_t table_id, uint64_t row)
{
    uint64_t h = finalise(seed ^ 0x5ca1ab1e0ddba11ull);
    h = finalise(h + ((uint64_t)table_id + 1) * GOLDEN);
    return finalise(h ^ row);
}

static inline float value_from(uint64_t h, uint32_t col)
{
    uint64_t x = finalise(h + ((uint64_t)col + 1) * GOLDEN);
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
    if (dim == 0 || dim > US_SYNTH_MAX_STACK_DIM || us_dtype_name(dtype) == NULL)
        return us_err_set(err, US_EINVAL, "synthetic table %u: dim %u (1..%d) or dtype %d "
                          "invalid", table_id, dim, US_SYNTH_MAX_STACK_DIM, (int)dtype);
    if (dtype == US_DTYPE_F32) {
        us_synth_row_f32(out, seed, table_id, row, dim);
        return US_OK;
    }
    if (dtype == US_DTYPE_INT8 && scale == NULL)
        return us_err_set(err, US_EINVAL, "synthetic table %u: int8 row needs a scale", table_id);
    float tmp[US_SYNTH_MAX_STACK_DIM];
    us_synth_row_f32(tmp, seed, table_id, row, dim);
    return us_rows_encode(out, scale, dtype, tmp, US_DTYPE_F32, 1, dim, row, err);
}
