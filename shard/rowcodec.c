/* rowcodec.c — f32 <-> stored dtype for whole rows (see rowcodec.h). */
#include "shard/rowcodec.h"

#include "kernels/quant.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
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
        /* the kernels' quantiser (kernels/quant.h) on f32 rows: one rule everywhere */
        bool widen = in_dtype != US_DTYPE_F32 || ((uintptr_t)in & 3) != 0;
        float *tmp = widen ? malloc(dim * sizeof *tmp) : NULL;
        if (widen && tmp == NULL)
            return us_err_set(err, US_ENOMEM, "int8 encode: out of memory for a row of %zu", dim);
        int rc = US_OK;
        for (size_t r = 0; r < n_rows && rc == US_OK; r++) {
            const uint8_t *src = (const uint8_t *)in + r * in_row;
            const float *x = (const float *)(const void *)src;
            if (widen) {
                us_row_decode_f32(tmp, src, in_dtype, 1.0f, dim);
                x = tmp;
            }
            rc = us_quant_int8_rows((int8_t *)out + r * out_row, &scales[r], x, 1, dim, err);
        }
        free(tmp);
        return rc;
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
