/* matmul.c — row-major sgemm/saxpy wrappers and their references: see matmul.h. */
#include "kernels/matmul.h"

#include <cblas.h>

void us_matmul_forward(float *y, const float *x, const float *w, size_t T, size_t in,
                       size_t out, float beta)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)out, (int)in, 1.0f,
                x, (int)in, w, (int)out, beta, y, (int)out);
}

void us_matmul_ref(float *y, const float *x, const float *w, size_t T, size_t in,
                   size_t out, float beta)
{
    for (size_t t = 0; t < T; t++)
        for (size_t o = 0; o < out; o++) {
            float s = 0.0f;
            for (size_t i = 0; i < in; i++)
                s += x[t * in + i] * w[i * out + o];
            /* beta = 0 must not read y: it may be uninitialised (NaN) */
            y[t * out + o] = beta == 0.0f ? s : s + beta * y[t * out + o];
        }
}

void us_axpy(float *y, float a, const float *x, size_t n)
{
    cblas_saxpy((int)n, a, x, 1, y, 1);
}

void us_axpy_ref(float *y, float a, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void us_add_inplace(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
