/* test_quant.c — int8 row quantisation: known values, ties to even, bounds,
 * zero rows, round trip error, NaN/Inf rejection with untouched outputs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/quant.h"

static void test_known_values_and_ties(void **state)
{
    (void)state;
    /* max 127 -> scale 1: values are their own codes; .5 ties go to even */
    float x[8] = { 127.0f, -127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 3.49f };
    int8_t q[8];
    float scale;
    assert_int_equal(us_quant_int8_rows(q, &scale, x, 1, 8, NULL), US_OK);
    assert_true(scale == 1.0f);
    const int8_t want[8] = { 127, -127, 0, 2, 2, 0, -2, 3 };
    assert_memory_equal(q, want, 8);
    /* general scale: max|x| maps to +-127 exactly */
    float y[4] = { -3.0f, 1.0f, 0.0f, 2.0f };
    assert_int_equal(us_quant_int8_rows(q, &scale, y, 1, 4, NULL), US_OK);
    assert_true(scale == 3.0f / 127.0f);
    assert_int_equal(q[0], -127);
    assert_int_equal(q[1], 42);      /* 1 / (3/127) = 42.33 */
    assert_int_equal(q[2], 0);
    assert_int_equal(q[3], 85);      /* 84.67 */
}

static void test_rows_and_roundtrip(void **state)
{
    (void)state;
    enum { R = 5, D = 67 };
    float x[R * D], back[R * D], scales[R];
    int8_t q[R * D];
    uint32_t s = 12345;
    for (int i = 0; i < R * D; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (float)(1 + i / D * 10);
    }
    for (int c = 0; c < D; c++)
        x[2 * D + c] = 0.0f;                        /* all-zero row */
    x[3 * D + 5] = -1e-44f;                         /* tiny row: scale underflows */
    for (int c = 0; c < D; c++)
        if (c != 5) x[3 * D + c] = 0.0f;
    assert_int_equal(us_quant_int8_rows(q, scales, x, R, D, NULL), US_OK);
    assert_true(scales[2] == 0.0f);
    assert_true(scales[3] == 0.0f);
    for (int c = 0; c < D; c++) {
        assert_int_equal(q[2 * D + c], 0);
        assert_int_equal(q[3 * D + c], 0);
    }
    assert_int_equal(us_dequant_int8_rows(back, q, scales, R, D, NULL), US_OK);
    for (int r = 0; r < R; r++) {
        float max_abs = 0;
        int seen_max = 0;
        for (int c = 0; c < D; c++)
            max_abs = fmaxf(max_abs, fabsf(x[r * D + c]));
        for (int c = 0; c < D; c++) {
            int8_t v = q[r * D + c];
            assert_true(v != -128);
            if (v == 127 || v == -127) seen_max = 1;
            /* round to nearest: error at most half a step (+ f32 slop) */
            if (scales[r] > 0)
                assert_true(fabsf(back[r * D + c] - x[r * D + c]) <= 0.5f * scales[r] * 1.0001f);
        }
        if (r != 2 && r != 3)
            assert_true(seen_max);
        if (r != 2 && r != 3)
            assert_float_equal(scales[r], max_abs / 127.0f, 0.0f);
    }
}

static void test_nonfinite_rejected(void **state)
{
    (void)state;
    float x[2 * 3] = { 1, 2, 3, 4, INFINITY, 6 };
    int8_t q[6];
    float scales[2] = { -1, -1 };
    memset(q, 0x11, sizeof q);
    us_err err = { 0 };
    assert_int_equal(us_quant_int8_rows(q, scales, x, 2, 3, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "row 1 column 1"));
    assert_non_null(strstr(err.msg, "Inf"));
    for (int i = 0; i < 6; i++)
        assert_int_equal(q[i], 0x11);               /* row 0 was not written either */
    assert_true(scales[0] == -1 && scales[1] == -1);
    x[4] = NAN;
    assert_int_equal(us_quant_int8_rows(q, scales, x, 2, 3, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "NaN"));
    assert_int_equal(us_quant_int8_rows(NULL, scales, x, 2, 3, NULL), US_EINVAL);
    assert_int_equal(us_dequant_int8_rows(x, NULL, scales, 2, 3, NULL), US_EINVAL);
    assert_int_equal(us_quant_int8_rows(NULL, NULL, NULL, 0, 3, NULL), US_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values_and_ties),
        cmocka_unit_test(test_rows_and_roundtrip),
        cmocka_unit_test(test_nonfinite_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
