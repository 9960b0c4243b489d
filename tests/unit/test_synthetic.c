/* test_synthetic.c — synthetic values: range, exactness, fast path == scalar, golden values, dtypes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "shard/rowcodec.h"
#include "shard/synthetic.h"
#include "shard/tensorfile.h"

static void test_range_and_exactness(void **state)
{
    (void)state;
    double sum = 0, sumsq = 0;
    float lo = 1, hi = -1;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float v = us_synth_value(7, 3, (uint64_t)i * 1000003ull, (uint32_t)(i % 97));
        assert_true(v >= -1.0f && v < 1.0f);
        /* a multiple of 2^-23: exact in f32 */
        float k = (v + 1.0f) * 0x1p23f;
        assert_true(k == floorf(k));
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
        sum += v;
        sumsq += (double)v * v;
    }
    /* uniform on [-1, 1): mean 0, variance 1/3 */
    assert_true(fabs(sum / n) < 0.01);
    assert_true(fabs(sumsq / n - 1.0 / 3.0) < 0.01);
    assert_true(lo < -0.999f && hi > 0.999f);
}

static void test_row_matches_scalar_and_keys_matter(void **state)
{
    (void)state;
    float row[300];
    for (uint64_t r = 0; r < 50; r++) {
        uint64_t big = r * 0x123456789ull + 99999999999ull;   /* ids beyond 2^32 */
        us_synth_row_f32(row, 11, 2, big, 300);
        for (uint32_t c = 0; c < 300; c++)
            assert_true(row[c] == us_synth_value(11, 2, big, c));
    }
    /* every key component changes the value */
    float v = us_synth_value(1, 1, 1, 1);
    assert_true(v != us_synth_value(2, 1, 1, 1));
    assert_true(v != us_synth_value(1, 2, 1, 1));
    assert_true(v != us_synth_value(1, 1, 2, 1));
    assert_true(v != us_synth_value(1, 1, 1, 2));
    /* neighbouring rows are not shifted copies of each other */
    float a[8], b[8];
    us_synth_row_f32(a, 5, 0, 10, 8);
    us_synth_row_f32(b, 5, 0, 11, 8);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a + 1, b, sizeof(float) * 7);
}

/* Golden values pin the function forever: stores and references depend on it.
 * Computed by the independent Python implementation tests/ref/synthetic.py;
 * each value is k * 2^-23 - 1. */
static void test_golden(void **state)
{
    (void)state;
    struct { uint64_t seed; uint32_t table; uint64_t row; uint32_t col; uint32_t k; } g[] = {
        { 0, 0, 0, 0, 0 }, { 1, 0, 0, 0, 0 }, { 42, 3, 123456789ull, 17, 0 },
        { 0xdeadbeefull, 7, 99999999999ull, 255, 0 },
    };
    static const uint32_t golden_k[] = { 12410932, 12823689, 9049600, 7070305 };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        float v = us_synth_value(g[i].seed, g[i].table, g[i].row, g[i].col);
        float want = (float)golden_k[i] * 0x1p-23f - 1.0f;
        if (v != want)
            fail_msg("golden %zu: got %.9g (k=%u), want %.9g", i, v,
                     (uint32_t)((v + 1.0f) * 0x1p23f), want);
    }
}

static void test_dtypes(void **state)
{
    (void)state;
    us_err err;
    enum { DIM = 64 };
    float f[DIM], dec[DIM];
    us_synth_row_f32(f, 3, 1, 77, DIM);
    uint16_t h[DIM];
    assert_int_equal(us_synth_row(h, NULL, US_DTYPE_BF16, 3, 1, 77, DIM, &err), US_OK);
    for (int c = 0; c < DIM; c++)
        assert_int_equal(h[c], us_f32_to_bf16(f[c]));
    assert_int_equal(us_synth_row(h, NULL, US_DTYPE_F16, 3, 1, 77, DIM, &err), US_OK);
    for (int c = 0; c < DIM; c++)
        assert_int_equal(h[c], us_f32_to_f16(f[c]));
    int8_t q[DIM];
    float scale = -1;
    assert_int_equal(us_synth_row(q, &scale, US_DTYPE_INT8, 3, 1, 77, DIM, &err), US_OK);
    float max_abs = 0;
    for (int c = 0; c < DIM; c++)
        max_abs = fmaxf(max_abs, fabsf(f[c]));
    assert_true(scale == max_abs / 127.0f);
    us_row_decode_f32(dec, q, US_DTYPE_INT8, scale, DIM);
    int saw127 = 0;
    for (int c = 0; c < DIM; c++) {
        assert_true(fabsf(dec[c] - f[c]) <= 0.5f * scale * 1.0001f);
        saw127 |= q[c] == 127 || q[c] == -127;
    }
    assert_true(saw127);
    assert_int_equal(us_synth_row(q, NULL, US_DTYPE_INT8, 3, 1, 77, DIM, &err), US_EINVAL);
    /* wide rows (beyond the on-stack buffer) in every dtype */
    enum { WIDE = 5000 };
    float *wf = malloc(WIDE * 4), *wd = malloc(WIDE * 4);
    int8_t *wq = malloc(WIDE);
    uint16_t *wh = malloc(WIDE * 2);
    us_synth_row_f32(wf, 8, 2, 1ull << 40, WIDE);
    assert_int_equal(us_synth_row(wq, &scale, US_DTYPE_INT8, 8, 2, 1ull << 40, WIDE, &err), US_OK);
    us_row_decode_f32(wd, wq, US_DTYPE_INT8, scale, WIDE);
    for (int c = 0; c < WIDE; c++)
        assert_true(fabsf(wd[c] - wf[c]) <= 0.5f * scale * 1.0001f);
    assert_int_equal(us_synth_row(wh, NULL, US_DTYPE_F16, 8, 2, 1ull << 40, WIDE, &err), US_OK);
    assert_int_equal(wh[WIDE - 1], us_f32_to_f16(wf[WIDE - 1]));
    free(wf); free(wd); free(wq); free(wh);
    assert_int_equal(us_synth_row(q, &scale, US_DTYPE_F32, 3, 1, 77, US_SYNTH_MAX_DIM + 1, &err), US_EINVAL);
    assert_int_equal(us_synth_row(q, &scale, US_DTYPE_F32, 3, 1, 77, 0, &err), US_EINVAL);
    assert_int_equal(us_synth_row(q, &scale, (us_dtype)9, 3, 1, 77, 4, &err), US_EINVAL);
}

static void test_rowcodec(void **state)
{
    (void)state;
    us_err err;
    float in[2][3] = { { 0, 0, 0 }, { 1.0f, -2.54f, 0.01f } };
    int8_t q[2][3];
    float s[2];
    assert_int_equal(us_rows_encode(q, s, US_DTYPE_INT8, in, US_DTYPE_F32, 2, 3, 0, &err), US_OK);
    assert_true(s[0] == 0.0f);
    assert_int_equal(q[0][0], 0);
    assert_true(s[1] == 2.54f / 127.0f);
    assert_int_equal(q[1][1], -127);
    assert_int_equal(q[1][0], 50);   /* 1 / 0.02 = 50 */
    assert_int_equal(q[1][2], 0);    /* 0.01 / 0.02 = 0.5 -> ties to even: 0 */
    in[1][2] = NAN;
    memset(q, 9, sizeof q);
    assert_int_equal(us_rows_encode(q, s, US_DTYPE_INT8, in, US_DTYPE_F32, 2, 3, 40, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "row 41 column 2"));
    assert_int_equal(q[0][0], 9);    /* nothing written */
    /* bf16 in -> f16 out goes through f32 */
    uint16_t b[2] = { 0x3f80, 0xc040 }, o[2];   /* 1.0, -3.0 */
    assert_int_equal(us_rows_encode(o, NULL, US_DTYPE_F16, b, US_DTYPE_BF16, 1, 2, 0, &err), US_OK);
    assert_int_equal(o[0], 0x3c00);
    assert_int_equal(o[1], 0xc200);
    assert_int_equal(us_rows_encode(o, NULL, US_DTYPE_F16, q, US_DTYPE_INT8, 1, 2, 0, &err), US_EINVAL);
}

/* 2000 rows x 96 at ids beyond 2^40, checked bit for bit by the independent
 * numpy implementation (tests/ref/synthetic.py). */
static void test_against_numpy_reference(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0 || access("tests/ref/synthetic.py", R_OK) != 0)
        skip();
    enum { ROWS = 2000, DIM = 96 };
    const uint64_t row0 = (1ull << 40) + 12345;
    float *v = malloc(sizeof(float) * ROWS * DIM);
    for (uint64_t r = 0; r < ROWS; r++)
        us_synth_row_f32(v + r * DIM, 0xfeedull, 6, row0 + r, DIM);
    char path[] = "/tmp/us_synth_XXXXXX.npy";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    close(fd);
    us_err err;
    us_tensor_desc d = { .name = "v", .dtype = US_DTYPE_F32, .ndim = 2, .shape = { ROWS, DIM },
                         .data = v };
    assert_int_equal(us_tf_write(path, US_TF_NPY, &d, 1, true, &err), US_OK);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/synthetic.py --check %s 0xfeed 6 %llu",
             path, (unsigned long long)row0);
    int rc = system(cmd);
    unlink(path);
    free(v);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_and_exactness),
        cmocka_unit_test(test_row_matches_scalar_and_keys_matter),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_rowcodec),
        cmocka_unit_test(test_against_numpy_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
