/* quant.c — int8 row quantisation (see quant.h for the exact rules). */
#include "kernels/quant.h"

#include <math.h>

int us_quant_int8_rows(int8_t *q, float *scales, const float *x,
                       size_t n_rows, size_t dim, us_err *err)
{
    if (n_rows == 0 || dim == 0)
        return US_OK;
    if (q == NULL || scales == NULL || x == NULL)
        return us_err_set(err, US_EINVAL, "quantise: NULL argument");
    /* Check everything first, so a bad row leaves all outputs untouched. */
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < dim; c++)
            if (!isfinite(x[r * dim + c]))
                return us_err_set(err, US_EINVAL, "quantise: row %zu column %zu is %s: "
                                  "int8 cannot represent it", r, c,
                                  isnan(x[r * dim + c]) ? "NaN" : "Inf");
    for (size_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * dim;
        int8_t *qr = q + r * dim;
        float max_abs = 0.0f;
        for (size_t c = 0; c < dim; c++)
            max_abs = fmaxf(max_abs, fabsf(xr[c]));
        float scale = max_abs / 127.0f;
        scales[r] = scale;
        if (scale == 0.0f) {
            for (size_t c = 0; c < dim; c++)
                qr[c] = 0;
            continue;
        }
        for (size_t c = 0; c < dim; c++) {
            /* x/scale may round to just above 127 (or be inexact for tiny
             * subnormal scales): clamp keeps the symmetric range. */
            float v = nearbyintf(xr[c] / scale);
            v = fminf(127.0f, fmaxf(-127.0f, v));
            qr[c] = (int8_t)v;
        }
    }
    return US_OK;
}

int us_dequant_int8_rows(float *x, const int8_t *q, const float *scales,
                         size_t n_rows, size_t dim, us_err *err)
{
    if (n_rows == 0 || dim == 0)
        return US_OK;
    if (q == NULL || scales == NULL || x == NULL)
        return us_err_set(err, US_EINVAL, "dequantise: NULL argument");
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < dim; c++)
            x[r * dim + c] = (float)q[r * dim + c] * scales[r];
    return US_OK;
}
