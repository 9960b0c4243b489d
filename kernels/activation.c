/* activation.c — softmax and element-wise activations: see activation.h. */
#include "kernels/activation.h"

void us_softmax_rows(float *out, const float *in, size_t n_rows, size_t n_cols)
{
    for (size_t r = 0; r < n_rows; r++) {
        const float *x = in + r * n_cols;
        float *y = out + r * n_cols;
        /* `>` skips NaN here on purpose: the NaN then reaches exp() and the
         * sum, so the row comes out NaN instead of silently dropping it. */
        float max = -INFINITY;
        for (size_t i = 0; i < n_cols; i++)
            if (x[i] > max)
                max = x[i];
        if (max == -INFINITY) {
            int any_nan = 0;
            for (size_t i = 0; i < n_cols; i++)
                any_nan |= isnan(x[i]);
            for (size_t i = 0; i < n_cols; i++)
                y[i] = any_nan ? NAN : 0.0f;
            continue;
        }
        double sum = 0.0;
        for (size_t i = 0; i < n_cols; i++) {
            float e = expf(x[i] - max);
            y[i] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum);
        for (size_t i = 0; i < n_cols; i++)
            y[i] *= inv;
    }
}

void us_silu(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] * us_sigmoidf(in[i]);
}

void us_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gate[i] * us_sigmoidf(gate[i]) * up[i];
}

void us_elu1(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = us_elu1f(in[i]);
}
