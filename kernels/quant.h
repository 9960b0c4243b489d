/*
 * quant.h — symmetric int8 row quantisation, one f32 scale per row.
 *
 * For each row x[0..dim-1]:
 *     scale = max_c |x[c]| / 127          (f32 division, rounded once)
 *     q[c]  = clamp(round_half_even(x[c] / scale), -127, 127)
 * and dequantisation is x'[c] = (float)q[c] * scale. The code -128 is never
 * produced (the range is symmetric); a stored -128 dequantises as -128*scale.
 *
 * Special values:
 *   - an all-zero row (or one whose scale underflows to 0, i.e. max|x| below
 *     127 * 2^-149) gets scale 0 and q = 0 everywhere;
 *   - NaN or +-Inf anywhere in the input cannot be represented: the call
 *     fails with US_EINVAL naming the row and column, and writes nothing
 *     (every row is checked before the first output is written).
 * Rounding uses nearbyintf(), i.e. the current rounding mode, which is
 * round-to-nearest-even unless the caller changed it with fesetround().
 * Pure functions: no allocation, no global state.
 */
#ifndef US_QUANT_H
#define US_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

/* x: [n_rows][dim] f32 -> q: [n_rows][dim] int8, scales: [n_rows].
 * Returns: US_OK; US_EINVAL for NULL arguments or a NaN/Inf input (names
 * row and column; nothing written). */
int us_quant_int8_rows(int8_t *q, float *scales, const float *x,
                       size_t n_rows, size_t dim, us_err *err);

/* q, scales -> x: [n_rows][dim] f32.
 * Returns: US_OK; US_EINVAL for NULL arguments (nothing written). */
int us_dequant_int8_rows(float *x, const int8_t *q, const float *scales,
                         size_t n_rows, size_t dim, us_err *err);

#endif
