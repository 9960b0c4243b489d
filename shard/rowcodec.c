/* rowcodec.c — f32 <-> stored dtype for whole rows (see rowcodec.h). */
#include "shard/rowcodec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float load_f32(const void *in, us_dtype dtype, size_t i)
{
    switch (dtype) {
    case US_DTYPE_F32: { float f; memcpy(&f, (const uint8_t *)in + 4 * i, 4); return f; }
    case US_DTYPE_BF16: { uint16_t h; memcpy(&h, (const uint8_t *)in + 2 * i, 2); return us_bf16_to_f32(h); }
    case US_DTYPE_F16: { uint16_t h; memcpy(&h, (const uint8_t *)in + 2 * i, 2); return us_f16_to_f32(h); }
    case US_DTYPE_INT8: return (float)((const int8_t *)in)[i];
    }
    return 0.0f;
}

static int encode_int8_row(int8_t *q, float *scale, const void *in, us_dtype in_dtype,
                           size_t dim, uint64_t row, us_err *err)
{
    float max_abs = 0.0f;
    for (size_t c = 0; c < dim; c++) {
        float x = load_f32(in, in_dtype, c);
        if (!isfinite(x))
            return us_err_set(err, US_EINVAL, "row %llu column %zu is %s: int8 cannot "
                              "represent it", (unsigned long long)row, c, isnan(x) ? "NaN" : "Inf");
        max_abs = fmaxf(max_abs, fabsf(x));
    }
    float s = max_abs / 127.0f;
    *scale = s;
    for (size_t c = 0; c < dim; c++) {
        if (s == 0.0f) {
            q[c] = 0;
            continue;
        }
        float v = nearbyintf(load_f32(in, in_dtype, c) / s);
        q[c] = (int8_t)fminf(127.0f, fmaxf(-127.0f, v));
    }
    return US_OK;
}

int us_rows_encode(void *out, float *scales, us_dtype out_dtype, const void *in,
                   us_dtype in_dtype, size_t n_rows, size_t dim, uint64_t row0, us_err *err)
{
    size_t in_row = dim * us_dtype_size(in_dtype), out_row = dim * us_dtype_size(out_dtype);
    if (in_dtype == US_DTYPE_INT8)
        return us_err_set(err, US_EINVAL, "int8 input rows have no scales; cannot convert");
    if (in_dtype == out_dtype) {
        memcpy(out, in, n_rows * in_row);
        return US_OK;
    }
    if (out_dtype == US_DTYPE_INT8) {
        /* validate every row first so a bad row leaves out untouched */
        for (size_t r = 0; r < n_rows; r++)
            for (size_t c = 0; c < dim; c++) {
                float x = load_f32((const uint8_t *)in + r * in_row, in_dtype, c);
                if (!isfinite(x))
                    return us_err_set(err, US_EINVAL, "row %llu column %zu is %s: int8 "
                                      "cannot represent it", (unsigned long long)(row0 + r), c,
                                      isnan(x) ? "NaN" : "Inf");
            }
        for (size_t r = 0; r < n_rows; r++) {
            int rc = encode_int8_row((int8_t *)out + r * out_row, &scales[r],
                                     (const uint8_t *)in + r * in_row, in_dtype, dim,
                                     row0 + r, err);
            if (rc != US_OK)
                return rc;
        }
        return US_OK;
    }
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *src = (const uint8_t *)in + r * in_row;
        uint8_t *dst = (uint8_t *)out + r * out_row;
        for (size_t c = 0; c < dim; c++) {
            float x = load_f32(src, in_dtype, c);
            uint16_t h;
            switch (out_dtype) {
            case US_DTYPE_F32:  memcpy(dst + 4 * c, &x, 4); break;
            case US_DTYPE_BF16: h = us_f32_to_bf16(x); memcpy(dst + 2 * c, &h, 2); break;
            case US_DTYPE_F16:  h = us_f32_to_f16(x);  memcpy(dst + 2 * c, &h, 2); break;
            case US_DTYPE_INT8: break;  /* handled above */
            }
        }
    }
    return US_OK;
}

void us_row_decode_f32(float *out, const void *row, us_dtype dtype, float scale, size_t dim)
{
    for (size_t c = 0; c < dim; c++)
        out[c] = dtype == US_DTYPE_INT8 ? (float)((const int8_t *)row)[c] * scale
                                        : load_f32(row, dtype, c);
}
