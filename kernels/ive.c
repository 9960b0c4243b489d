/* ive.c — IVE projection out (+)= sum_p P_p W_p: see ive.h. */
#include "kernels/ive.h"

#include <cblas.h>

void us_ive_project(float *out, const float *pooled, const float *W, size_t T,
                    size_t n_groups, size_t v_dim, size_t d_out, int accumulate)
{
    if (T == 0 || d_out == 0)
        return;
    size_t kdim = n_groups * v_dim;
    if (kdim == 0) {
        if (!accumulate)
            for (size_t i = 0; i < T * d_out; i++)
                out[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d_out,
                (int)kdim, 1.0f, pooled, (int)kdim, W, (int)d_out,
                accumulate ? 1.0f : 0.0f, out, (int)d_out);
}

void us_ive_project_ref(float *out, const float *pooled, const float *W, size_t T,
                        size_t n_groups, size_t v_dim, size_t d_out, int accumulate)
{
    for (size_t t = 0; t < T; t++) {
        for (size_t o = 0; o < d_out; o++) {
            float s = 0.0f;
            for (size_t p = 0; p < n_groups; p++)
                for (size_t i = 0; i < v_dim; i++)
                    s += pooled[(t * n_groups + p) * v_dim + i] *
                         W[(p * v_dim + i) * d_out + o];
            out[t * d_out + o] = accumulate ? out[t * d_out + o] + s : s;
        }
    }
}
