/* matmul.c — row-major sgemm/saxpy wrappers and their references: see matmul.h. */
#include "kernels/matmul.h"

#include <cblas.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* The merge of push-down partials adds n_tokens x dim floats per shard per
 * batch; -O2 does not vectorise this loop (possible aliasing), and scalar it
 * cost ~6 instructions a float. SSE2 is in every x86-64 baseline, so no
 * run-time dispatch; elementwise adds round the same at any width. */
void us_add_inplace(float *y, const float *x, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= n; i += 8) {
        __m128 a = _mm_add_ps(_mm_loadu_ps(y + i), _mm_loadu_ps(x + i));
        __m128 b = _mm_add_ps(_mm_loadu_ps(y + i + 4), _mm_loadu_ps(x + i + 4));
        _mm_storeu_ps(y + i, a);
        _mm_storeu_ps(y + i + 4, b);
    }
#endif
    for (; i < n; i++)
        y[i] += x[i];
}

void us_add_to_zero(float *y, const float *x, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_ps(y + i, _mm_add_ps(zero, _mm_loadu_ps(x + i)));
        _mm_storeu_ps(y + i + 4, _mm_add_ps(zero, _mm_loadu_ps(x + i + 4)));
    }
#endif
    for (; i < n; i++)
        y[i] = 0.0f + x[i];
}

void us_add_inplace_ref(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}
