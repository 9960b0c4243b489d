/*
 * rowcodec.h — rows of a table between f32 and the stored dtypes.
 *
 * A stored row is dim elements of the table dtype; int8 rows also carry one
 * f32 scale. Encoding f32 -> bf16/f16 rounds to nearest even (convert.h);
 * f32 -> int8 is symmetric per-row quantisation by the kernels' quantiser
 * (kernels/quant.h, called here) on the row widened to f32:
 *     scale = max_c |x[c]| / 127,  q[c] = clamp(nearbyint(x[c] / scale), -127, 127)
 * an all-zero row has scale 0 and q = 0; NaN/Inf cannot be stored as int8
 * (US_EINVAL naming the row and column, nothing written).
 * Converting a row to its own dtype copies its bytes (bit-exact).
 */
#ifndef US_ROWCODEC_H
#define US_ROWCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"

/* in: n_rows x dim of in_dtype (not int8) -> out: n_rows x dim of out_dtype;
 * scales[n_rows] is written when out_dtype is int8 (may be NULL otherwise).
 * row0 is the first row's id, used only in error messages.
 * Returns: US_OK; US_EINVAL for int8 input or a NaN/Inf into int8 (naming
 * row and column); US_ENOMEM.
 */
int us_rows_encode(void *out, float *scales, us_dtype out_dtype,
                   const void *in, us_dtype in_dtype,
                   size_t n_rows, size_t dim, uint64_t row0, us_err *err);

/* One stored row (scale used for int8) -> f32.
 * Returns: nothing; cannot fail.
 */
void us_row_decode_f32(float *out, const void *row, us_dtype dtype, float scale, size_t dim);

#endif
