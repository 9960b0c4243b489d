/*
 * infini.h — Infini-attention compressive memory (Munkhdalai et al. 2024).
 *
 * Per head h the memory is M_h (d_key x d_value) and z_h (d_key); s(x) =
 * ELU(x) + 1 (> 0). For the T tokens of a segment:
 *
 *   retrieve  A_mem[t] = s(Q_t) M_h / (s(Q_t) . z_h)
 *   linear    M_h += s(K)^T V
 *   delta     M_h += s(K)^T (V - s(K) M_h / (s(K) z_h))   (old M_h, old z_h)
 *   norm      z_h += sum_t s(K_t)
 *   gate      A = sigmoid(beta_h) A_mem + (1 - sigmoid(beta_h)) A_dot
 *
 * Order per segment: retrieve from the old memory, then update it.
 *
 * Zero denominator: at the first segment M = 0 and z = 0, so the quotient is
 * 0/0. We return 0 wherever the denominator is exactly 0 (no epsilon), which
 * for the first segment means "the memory contributes nothing" and for delta
 * means "nothing retrieved, add V as is". Since s() > 0, a denominator is 0
 * only when z = 0 (or s() underflows); any other value, NaN included, is
 * divided as is, so NaN propagates. tests/ref/nn_ref.py does the same.
 *
 * Layout: q, k [T][n_heads * d_key]; v [T][n_heads * d_value];
 * a_mem, a_dot, out [T][n_heads * d_value]; M [n_heads][d_key][d_value];
 * z [n_heads][d_key]; beta [n_heads]. No positional encoding on memory Q/K.
 *
 * Fast paths use cblas_sgemm (s(Q) M and s(K)^T V per head; retrieve of up
 * to 4 tokens runs direct loops instead: decoding); the _ref
 * functions are the scalar references. Scratch sizes (floats):
 *   retrieve: T * d_key        update: T * (d_key + d_value)
 * All are void: shapes are the caller's contract, nothing can fail.
 */
#ifndef US_INFINI_H
#define US_INFINI_H

#include <stddef.h>

typedef enum us_infini_rule {
    US_INFINI_LINEAR = 0,
    US_INFINI_DELTA  = 1,
} us_infini_rule;

/* Returns: nothing; cannot fail. */
void us_infini_retrieve(float *a_mem, float *scratch, const float *q,
                        const float *M, const float *z, size_t T,
                        size_t n_heads, size_t d_key, size_t d_value);

/* Returns: nothing; cannot fail. */
void us_infini_update(float *M, float *z, float *scratch, const float *k,
                      const float *v, size_t T, size_t n_heads, size_t d_key,
                      size_t d_value, us_infini_rule rule);

/* Returns: nothing; cannot fail. */
void us_infini_gate(float *out, const float *a_mem, const float *a_dot,
                    const float *beta, size_t T, size_t n_heads, size_t d_value);

/* Returns: nothing; cannot fail. */
void us_infini_retrieve_ref(float *a_mem, const float *q, const float *M,
                            const float *z, size_t T, size_t n_heads,
                            size_t d_key, size_t d_value);

/* Returns: nothing; cannot fail. */
void us_infini_update_ref(float *M, float *z, float *scratch, const float *k,
                          const float *v, size_t T, size_t n_heads, size_t d_key,
                          size_t d_value, us_infini_rule rule);

#endif
