/*
 * convert.h — element conversions between f32 and the stored dtypes.
 *
 * bf16 and f16 are kept as raw uint16_t bit patterns. f32 -> bf16/f16 rounds
 * to nearest, ties to even; values beyond the f16 range become +-Inf; NaN
 * stays NaN (quiet, sign kept). Subnormal f16 values are produced and read
 * exactly. These scalar versions are the reference; array versions below
 * call them and may be vectorised later without changing results.
 */
#ifndef US_CONVERT_H
#define US_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The dtype of a stored table; the numbers are also the wire/manifest values. */
typedef enum us_dtype {
    US_DTYPE_F32  = 0,
    US_DTYPE_BF16 = 1,
    US_DTYPE_F16  = 2,
    US_DTYPE_INT8 = 3,  /* int8 values with one f32 scale per row */
} us_dtype;

/* Returns: bytes per element (int8: 1; the per-row scale is stored
 * separately); 0 for an unknown dtype. */
size_t us_dtype_size(us_dtype dtype);
/* Returns: "f32", "bf16", "f16", "int8"; NULL for an unknown value. */
const char *us_dtype_name(us_dtype dtype);
/* Parses a name as above. Returns: 0 with *out set; -1 (not a US_E* code,
 * *out unchanged) if the name is unknown. */
int us_dtype_parse(const char *name, us_dtype *out);

/* Returns: the bit pattern of f / the float with bit pattern u; cannot fail. */
static inline uint32_t us_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float us_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Returns: the exact f32 value of bf16 bits h; cannot fail. */
static inline float us_bf16_to_f32(uint16_t h) { return us_bits_f32((uint32_t)h << 16); }

/* Returns: f rounded to bf16 bits (nearest even, NaN kept quiet); cannot fail. */
static inline uint16_t us_f32_to_bf16(float f)
{
    uint32_t u = us_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);               /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* Returns: the exact f32 value of f16 bits h / f rounded to f16 bits
 * (nearest even, +-Inf beyond the range); cannot fail. */
float    us_f16_to_f32(uint16_t h);
uint16_t us_f32_to_f16(float f);

/* The scalar conversions over n elements. Returns: nothing; cannot fail. */
void us_f32_to_bf16_array(uint16_t *out, const float *in, size_t n);
void us_bf16_to_f32_array(float *out, const uint16_t *in, size_t n);
void us_f32_to_f16_array(uint16_t *out, const float *in, size_t n);
void us_f16_to_f32_array(float *out, const uint16_t *in, size_t n);

#endif
