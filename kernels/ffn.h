/*
 * ffn.h — feed-forward blocks of the transformer: the SwiGLU FFN and the
 * token routing of a mixture of experts around it.
 *
 *   SwiGLU FFN:  y += (silu(h W1) * (h W3)) W2
 *     h [T][d]   W1, W3 [d][f]   W2 [f][d]   y [T][d]
 *     hid1, hid2 [T][f] are caller scratch (hid1 ends holding the gated
 *     product). The add into y is the last sgemm's beta = 1, so the sum
 *     order matches the model's reference.
 *
 *   MoE routing, for expert e over T tokens with K choices each:
 *     us_moe_dispatch copies the rows of h routed to e into x_e (in token
 *       order) and records each row's slot t * K + j;
 *     us_moe_combine adds gate[slot] * y_e[i] to x[slot / K] per row.
 *   Experts are run one after another by the caller (0..E-1), so every
 *   token's sum has the same order on every rank.
 *
 * Pure functions over caller buffers; no allocation.
 */
#ifndef US_FFN_H
#define US_FFN_H

#include <stddef.h>
#include <stdint.h>

/* Fast path (OpenBLAS sgemm). Returns: nothing; cannot fail. */
void us_swiglu_ffn_forward(float *y, const float *h, const float *w1, const float *w3,
                           const float *w2, float *hid1, float *hid2, size_t T, size_t d,
                           size_t f);

/* Scalar reference of us_swiglu_ffn_forward. Returns: nothing; cannot fail. */
void us_swiglu_ffn_ref(float *y, const float *h, const float *w1, const float *w3,
                       const float *w2, float *hid1, float *hid2, size_t T, size_t d,
                       size_t f);

/* expert_of [T][K] is each token's chosen experts; x_e gets up to T*K rows
 * of d floats, slot as many entries.
 * Returns: the number of rows routed to expert e (0..T*K); cannot fail. */
size_t us_moe_dispatch(float *x_e, uint32_t *slot, const float *h, const uint32_t *expert_of,
                       size_t T, size_t K, size_t d, uint32_t e);

/* x [T][d] += gate[slot[i]] * y_e[i] for i < n (slot from us_moe_dispatch,
 * gate [T][K]). Returns: nothing; cannot fail. */
void us_moe_combine(float *x, const float *y_e, const uint32_t *slot, const float *gate,
                    size_t n, size_t K, size_t d);

#endif
