/*
 * convert.c — f32 <-> f16 by bit manipulation (no F16C needed), after the
 * well-known magic-number method: the subnormal cases let the FPU do the
 * round-to-nearest-even by adding/subtracting a power of two.
 */
#include "kernels/convert.h"

#include <string.h>

size_t us_dtype_size(us_dtype dtype)
{
    switch (dtype) {
    case US_DTYPE_F32:  return 4;
    case US_DTYPE_BF16: return 2;
    case US_DTYPE_F16:  return 2;
    case US_DTYPE_INT8: return 1;
    }
    return 0;
}

static const char *const dtype_names[] = { "f32", "bf16", "f16", "int8" };

const char *us_dtype_name(us_dtype dtype)
{
    if ((unsigned)dtype >= sizeof dtype_names / sizeof dtype_names[0])
        return NULL;
    return dtype_names[dtype];
}

int us_dtype_parse(const char *name, us_dtype *out)
{
    for (unsigned i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (us_dtype)i;
            return 0;
        }
    }
    return -1;
}

float us_f16_to_f32(uint16_t h)
{
    const uint32_t shifted_exp = 0x7c00u << 13;
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13;
    uint32_t exp = shifted_exp & o;
    o += (uint32_t)(127 - 15) << 23;
    if (exp == shifted_exp) {               /* Inf/NaN */
        o += (uint32_t)(128 - 16) << 23;
    } else if (exp == 0) {                  /* zero/subnormal: renormalise */
        o += 1u << 23;
        o = us_f32_bits(us_bits_f32(o) - us_bits_f32(113u << 23));
    }
    o |= ((uint32_t)h & 0x8000u) << 16;
    return us_bits_f32(o);
}

uint16_t us_f32_to_f16(float f)
{
    const uint32_t f32_inf = 255u << 23;
    const uint32_t f16_overflow = (127u + 16u) << 23;      /* 2^16 */
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t u = us_f32_bits(f);
    uint32_t sign = u & 0x80000000u;
    uint16_t o;
    u ^= sign;
    if (u >= f16_overflow) {
        o = u > f32_inf ? (uint16_t)(0x7e00u | ((u >> 13) & 0x3ffu)) : 0x7c00u;
    } else if (u < (113u << 23)) {          /* result is zero or subnormal */
        float t = us_bits_f32(u) + us_bits_f32(denorm_magic);
        o = (uint16_t)(us_f32_bits(t) - denorm_magic);
    } else {
        uint32_t mant_odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        u += mant_odd;
        o = (uint16_t)(u >> 13);            /* may carry into Inf: correct */
    }
    return (uint16_t)(o | (sign >> 16));
}

void us_f32_to_bf16_array(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = us_f32_to_bf16(in[i]);
}

void us_bf16_to_f32_array(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = us_bf16_to_f32(in[i]);
}

void us_f32_to_f16_array(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = us_f32_to_f16(in[i]);
}

void us_f16_to_f32_array(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = us_f16_to_f32(in[i]);
}
