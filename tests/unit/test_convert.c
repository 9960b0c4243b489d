/* test_convert.c — f32 <-> bf16/f16 against exact known bit patterns. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/convert.h"

static void test_f16_known_values(void **state)
{
    (void)state;
    assert_int_equal(us_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(us_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(us_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(us_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(us_f32_to_f16(65504.0f), 0x7bff);          /* max finite */
    assert_int_equal(us_f32_to_f16(65520.0f), 0x7c00);          /* ties up to Inf */
    assert_int_equal(us_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(us_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(us_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(us_f32_to_f16(ldexpf(1.0f, -24)), 0x0001); /* min subnormal */
    assert_int_equal(us_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie -> even (0) */
    assert_int_equal(us_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp -> 2 */
    assert_int_equal(us_f32_to_f16(ldexpf(1.0f, -14)), 0x0400); /* min normal */
    /* 1 + 2^-11 is halfway between 1 and 1+2^-10: ties to even (1.0) */
    assert_int_equal(us_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9: ties to even (0x3c02) */
    assert_int_equal(us_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    uint16_t nan16 = us_f32_to_f16(NAN);
    assert_true((nan16 & 0x7c00) == 0x7c00 && (nan16 & 0x03ff) != 0);
}

static void test_f16_roundtrip_all(void **state)
{
    (void)state;
    /* Every finite f16 converts to f32 and back to itself. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        float f = us_f16_to_f32((uint16_t)h);
        assert_int_equal(us_f32_to_f16(f), h);
    }
    assert_true(isinf(us_f16_to_f32(0x7c00)));
    assert_true(isnan(us_f16_to_f32(0x7e00)));
    assert_true(us_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(us_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(us_f32_to_bf16(-1.0f), 0xbf80);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1+2^-7: ties to even (1.0) */
    assert_int_equal(us_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    assert_int_equal(us_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    assert_int_equal(us_f32_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20)), 0x3f81);
    assert_int_equal(us_f32_to_bf16(INFINITY), 0x7f80);
    assert_true(isnan(us_bf16_to_f32(us_f32_to_bf16(NAN))));
    assert_true(isnan(us_bf16_to_f32(us_f32_to_bf16(us_bits_f32(0x7f800001u)))));
    assert_true(us_bf16_to_f32(0x3f80) == 1.0f);
}

static void test_dtype_names(void **state)
{
    (void)state;
    us_dtype d;
    assert_int_equal(us_dtype_parse("bf16", &d), 0);
    assert_int_equal(d, US_DTYPE_BF16);
    assert_int_equal(us_dtype_parse("f64", &d), -1);
    assert_string_equal(us_dtype_name(US_DTYPE_INT8), "int8");
    assert_null(us_dtype_name((us_dtype)9));
    assert_int_equal(us_dtype_size(US_DTYPE_F16), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_f16_roundtrip_all),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
