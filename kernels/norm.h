/*
 * norm.h — RMSNorm and LayerNorm forward over rows (llm.c style).
 *
 * Pure functions: explicit shapes, caller-provided buffers, no allocation,
 * no state. `out` may alias `in` (each row is read fully before written).
 *
 *   RMSNorm:   out = in / sqrt(mean(in^2) + eps) * weight
 *   LayerNorm: out = (in - mean) / sqrt(var + eps) * weight + bias
 *              (biased variance, as torch.nn.LayerNorm; bias may be NULL,
 *               weight may be NULL for no scale)
 *   L2:        out = in / max(||in||_2, eps)
 *              (torch.nn.functional.normalize; a zero row stays zero)
 *
 * Sums are accumulated in double, so results do not depend on the order
 * a vectoriser picks and match the numpy reference to ~1e-6 relative.
 * NaN/Inf in a row make that row NaN (mean/var are NaN); other rows are
 * unaffected. dim = 0 or n_rows = 0 is a no-op.
 */
#ifndef US_NORM_H
#define US_NORM_H

#include <stddef.h>

/* Returns: nothing; cannot fail. */
void us_rmsnorm_forward(float *out, const float *in, const float *weight,
                        size_t n_rows, size_t dim, float eps);

/* Returns: nothing; cannot fail. */
void us_layernorm_forward(float *out, const float *in, const float *weight,
                          const float *bias, size_t n_rows, size_t dim, float eps);

/* Returns: nothing; cannot fail. */
void us_l2norm_forward(float *out, const float *in, size_t n_rows, size_t dim, float eps);

#endif
