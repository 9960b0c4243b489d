/*
 * matmul.h — dense row-major linear algebra: y = x W (+ beta y), y += a x,
 * y += x.
 *
 * llm.c style: explicit shapes, caller buffers, no allocation. Every weight
 * is stored [in][out] (the layout the safetensors export writes), so a layer
 * is one row-major sgemm with no transposes:
 *
 *   x [T][in]   W [in][out]   y [T][out]
 *
 * The fast paths call OpenBLAS; the _ref functions are the plain loops the
 * unit test compares them with (not bit-equal: BLAS blocks and fuses the
 * sums, so they agree to float rounding). y must not alias x or W.
 */
#ifndef US_MATMUL_H
#define US_MATMUL_H

#include <stddef.h>

/* y = x W + beta * y (beta = 0: y is only written, 1: accumulate).
 * Returns: nothing; cannot fail (T = 0 or out = 0 touches nothing). */
void us_matmul_forward(float *y, const float *x, const float *w, size_t T, size_t in,
                       size_t out, float beta);

/* Scalar reference of us_matmul_forward. Returns: nothing; cannot fail. */
void us_matmul_ref(float *y, const float *x, const float *w, size_t T, size_t in,
                   size_t out, float beta);

/* y[0..n) += a * x[0..n) (BLAS saxpy). Returns: nothing; cannot fail. */
void us_axpy(float *y, float a, const float *x, size_t n);

/* Scalar reference of us_axpy. Returns: nothing; cannot fail. */
void us_axpy_ref(float *y, float a, const float *x, size_t n);

/* y[0..n) += x[0..n), element by element (exact same sums as the plain
 * loop at any vector width). Returns: nothing; cannot fail. */
void us_add_inplace(float *y, const float *x, size_t n);
/* Scalar reference of us_add_inplace (the fast path must match it bit for
 * bit). Returns: nothing; cannot fail. */
void us_add_inplace_ref(float *y, const float *x, size_t n);

/* y[0..n) = +0.0f + x[0..n): bit for bit what zeroing y and then
 * us_add_inplace(y, x, n) leaves (a -0 becomes +0, a signalling NaN is
 * quietened), without the zeroing pass and the read of y. The push merge
 * writes the first partial of a token with it. Returns: nothing; cannot fail. */
void us_add_to_zero(float *y, const float *x, size_t n);

#endif
