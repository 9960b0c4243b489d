/* norm.c — RMSNorm / LayerNorm rows: see norm.h. */
#include "kernels/norm.h"

#include <math.h>

/* Sum of squares of a row, in double (see norm.h). */
static double sum_squares(const float *x, size_t dim)
{
    double ss = 0.0;
    for (size_t i = 0; i < dim; i++)
        ss += (double)x[i] * x[i];
    return ss;
}

void us_rmsnorm_forward(float *out, const float *in, const float *weight,
                        size_t n_rows, size_t dim, float eps)
{
    if (dim == 0)
        return;
    for (size_t r = 0; r < n_rows; r++) {
        const float *x = in + r * dim;
        float *y = out + r * dim;
        float inv = (float)(1.0 / sqrt(sum_squares(x, dim) / (double)dim + (double)eps));
        for (size_t i = 0; i < dim; i++)
            y[i] = x[i] * inv * (weight ? weight[i] : 1.0f);
    }
}

void us_layernorm_forward(float *out, const float *in, const float *weight,
                          const float *bias, size_t n_rows, size_t dim, float eps)
{
    if (dim == 0)
        return;
    for (size_t r = 0; r < n_rows; r++) {
        const float *x = in + r * dim;
        float *y = out + r * dim;
        double sum = 0.0;
        for (size_t i = 0; i < dim; i++)
            sum += x[i];
        double mean = sum / (double)dim;
        double var = 0.0;
        for (size_t i = 0; i < dim; i++) {
            double d = x[i] - mean;
            var += d * d;
        }
        var /= (double)dim;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float meanf = (float)mean;
        for (size_t i = 0; i < dim; i++) {
            float v = (x[i] - meanf) * inv;
            if (weight)
                v *= weight[i];
            if (bias)
                v += bias[i];
            y[i] = v;
        }
    }
}

void us_l2norm_forward(float *out, const float *in, size_t n_rows, size_t dim, float eps)
{
    for (size_t r = 0; r < n_rows; r++) {
        const float *x = in + r * dim;
        float *y = out + r * dim;
        double norm = sqrt(sum_squares(x, dim));
        float inv = (float)(1.0 / (norm > (double)eps ? norm : (double)eps));
        for (size_t i = 0; i < dim; i++)
            y[i] = x[i] * inv;
    }
}
