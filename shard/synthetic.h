/*
 * synthetic.h — deterministic table values with no storage.
 *
 * A synthetic table's element (row, col) is a pure function of
 * (seed, table_id, row, col):
 *     h = splitmix64(seed, table_id, row)            one hash per row
 *     x = splitmix64_finalise(h + (col + 1) * 0x9e3779b97f4a7c15)
 *     (both from kernels/hash.h)
 *     value = (x >> 40) * 2^-23 - 1                  in [-1, 1), exact in f32
 * so any rank, test or numpy reference computes the same numbers, and tables
 * of 1e9..1e11 rows cost nothing. The value is a multiple of 2^-23, so it is
 * exact in f32 on every platform. Stored dtypes are derived from the f32 row
 * with the rowcodec rules (bf16/f16: round to nearest even; int8: per-row
 * scale max|x|/127), exactly as import would store that f32 row.
 */
#ifndef US_SYNTHETIC_H
#define US_SYNTHETIC_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"

#define US_SYNTH_MAX_DIM (1u << 20)

/* The per-row hash h above.
 * Returns: the 64-bit row hash.
 */
uint64_t us_synth_row_hash(uint64_t seed, uint32_t table_id, uint64_t row);

/* One element.
 * Returns: the element value in [-1, 1).
 */
float us_synth_value(uint64_t seed, uint32_t table_id, uint64_t row, uint32_t col);

/* out[0..dim-1] = the f32 row (the fast path: one row hash, then one mix
 * per element). Equal to us_synth_value() for each col (tested).
 * Returns: nothing; cannot fail.
 */
void us_synth_row_f32(float *out, uint64_t seed, uint32_t table_id, uint64_t row,
                      uint32_t dim);

/* The row in a stored dtype: out holds dim * us_dtype_size(dtype) bytes;
 * *scale is written for int8 (may be NULL otherwise). US_EINVAL for dim 0 or
 * above US_SYNTH_MAX_DIM, an unknown dtype or a missing int8 scale pointer.
 * Returns: US_OK, or US_EINVAL as above.
 */
int us_synth_row(void *out, float *scale, us_dtype dtype, uint64_t seed, uint32_t table_id,
                 uint64_t row, uint32_t dim, us_err *err);

#endif
