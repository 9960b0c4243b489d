/*
 * activation.h — element-wise activations and the row-wise softmax.
 *
 * Pure functions over caller buffers; `out` may alias any input.
 *
 *   us_softmax_rows   numerically stable: exp(x - max(row)) / sum. A row whose
 *                     entries are all -Inf (a fully masked row) becomes all
 *                     zeros: "attend to nothing" rather than 0/0. A NaN
 *                     anywhere in a row makes the whole row NaN; a +Inf entry
 *                     gives NaN too (Inf - Inf), as numpy does — never a crash.
 *   us_silu           x * sigmoid(x)
 *   us_swiglu         out = silu(gate) * up            (SwiGLU FFN inner step)
 *   us_elu1           ELU(x) + 1 = x + 1 for x > 0, exp(x) otherwise: the
 *                     positive feature map s() of Infini-attention's memory.
 *   us_sigmoidf       1 / (1 + exp(-x)), stable for large |x|.
 */
#ifndef US_ACTIVATION_H
#define US_ACTIVATION_H

#include <math.h>
#include <stddef.h>

/* Returns: sigmoid(x) in [0, 1] (NaN for NaN); cannot fail. */
static inline float us_sigmoidf(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* Returns: ELU(x) + 1 (> 0 for finite x, NaN for NaN); cannot fail. */
static inline float us_elu1f(float x)
{
    return x > 0.0f ? x + 1.0f : expf(x);
}

/* Returns: nothing; cannot fail (all four; n = 0 or n_rows = 0 is a no-op). */
void us_softmax_rows(float *out, const float *in, size_t n_rows, size_t n_cols);
void us_silu(float *out, const float *in, size_t n);
void us_swiglu(float *out, const float *gate, const float *up, size_t n);
void us_elu1(float *out, const float *in, size_t n);

#endif
