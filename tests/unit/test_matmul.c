/*
 * test_matmul.c — kernels/matmul.h and kernels/ffn.h: known values, the
 * OpenBLAS fast paths against the scalar references (odd shapes, beta 0
 * over NaN garbage, beta 1 accumulation) and MoE routing round trips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/ffn.h"
#include "kernels/hash.h"
#include "kernels/matmul.h"

static uint64_t rng_state = 11;

static float frand(void)   /* uniform in [-1, 1) */
{
    return (float)(us_splitmix64_next(&rng_state) >> 40) * 0x1p-23f - 1.0f;
}

static float *rand_array(size_t n)
{
    float *a = malloc((n ? n : 1) * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = frand();
    return a;
}

static void assert_close(const float *a, const float *b, size_t n, float tol)
{
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= tol * (1.0f + fabsf(b[i]))))
            fail_msg("element %zu: %.8g vs %.8g (tol %g)", i, a[i], b[i], tol);
    }
}

static void test_matmul_known(void **state)
{
    (void)state;
    const float x[2 * 3] = { 1, 2, 3, -1, 0, 2 };
    const float w[3 * 2] = { 1, 0, 0, 1, 2, -1 };
    float y[4] = { 10, 20, 30, 40 };
    us_matmul_forward(y, x, w, 2, 3, 2, 1.0f);
    const float want_acc[4] = { 10 + 7, 20 - 1, 30 + 3, 40 - 2 };
    assert_close(y, want_acc, 4, 0.0f);
    float r[4] = { NAN, NAN, NAN, NAN };   /* beta 0: never read */
    us_matmul_ref(r, x, w, 2, 3, 2, 0.0f);
    const float want[4] = { 7, -1, 3, -2 };
    assert_close(r, want, 4, 0.0f);
}

static void test_matmul_fast_vs_ref(void **state)
{
    (void)state;
    static const size_t shapes[][3] = { { 1, 1, 1 }, { 7, 13, 5 }, { 33, 64, 96 },
                                        { 3, 257, 17 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t T = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = rand_array(T * in), *w = rand_array(in * out);
        float *y0 = rand_array(T * out), *y1 = malloc(T * out * sizeof *y1);
        for (int beta = 0; beta <= 1; beta++) {
            memcpy(y1, y0, T * out * sizeof *y1);
            float *y2 = malloc(T * out * sizeof *y2);
            memcpy(y2, y0, T * out * sizeof *y2);
            us_matmul_forward(y1, x, w, T, in, out, (float)beta);
            us_matmul_ref(y2, x, w, T, in, out, (float)beta);
            assert_close(y1, y2, T * out, 2e-6f * (float)in);
            free(y2);
        }
        free(x), free(w), free(y0), free(y1);
    }
}

static void test_axpy_and_add(void **state)
{
    (void)state;
    const size_t n = 37;
    float *x = rand_array(n), *y = rand_array(n), *r = malloc(n * sizeof *r);
    memcpy(r, y, n * sizeof *r);
    us_axpy(y, 0.75f, x, n);
    us_axpy_ref(r, 0.75f, x, n);
    assert_close(y, r, n, 1e-7f);
    float a[3] = { 1, 2, 3 };
    const float b[3] = { 0.5f, -2, 1e-8f };
    us_add_inplace(a, b, 3);
    const float want[3] = { 1.5f, 0.0f, 3.0f + 1e-8f };
    assert_close(a, want, 3, 0.0f);
    free(x), free(y), free(r);
}

/* The vector add against the scalar loop, bit for bit, at every tail length
 * and with NaN/Inf/-0 lanes. */
static void test_add_inplace_fast_vs_ref(void **state)
{
    (void)state;
    for (size_t n = 0; n < 41; n++) {
        float *x = rand_array(n + 1), *y = rand_array(n + 1), *r = malloc((n + 1) * sizeof *r);
        if (n > 3) {
            x[1] = -0.0f, y[1] = 0.0f;
            x[2] = INFINITY, y[2] = -INFINITY;
            x[3] = NAN;
        }
        memcpy(r, y, (n + 1) * sizeof *r);
        us_add_inplace(y, x, n);
        us_add_inplace_ref(r, x, n);
        assert_memory_equal(y, r, (n + 1) * sizeof *r);
        free(x), free(y), free(r);
    }
}

/* us_add_to_zero against zeroing then the scalar add, bit for bit, at
 * every tail length and with -0/NaN/Inf lanes (-0 must come out +0). */
static void test_add_to_zero_vs_zero_then_add(void **state)
{
    (void)state;
    for (size_t n = 0; n < 41; n++) {
        float *x = rand_array(n + 1), *y = rand_array(n + 1), *r = malloc((n + 1) * sizeof *r);
        if (n > 3) {
            x[0] = -0.0f;
            x[1] = -INFINITY;
            x[2] = NAN;
        }
        memcpy(r, y, (n + 1) * sizeof *r);
        memset(r, 0, n * sizeof *r);
        us_add_inplace_ref(r, x, n);
        us_add_to_zero(y, x, n);
        assert_memory_equal(y, r, (n + 1) * sizeof *r);
        if (n > 3)
            assert_false(signbit(y[0]));
        free(x), free(y), free(r);
    }
}

static void test_swiglu_ffn_fast_vs_ref(void **state)
{
    (void)state;
    const size_t T = 5, d = 24, f = 40;
    float *h = rand_array(T * d), *w1 = rand_array(d * f), *w3 = rand_array(d * f);
    float *w2 = rand_array(f * d), *y = rand_array(T * d), *r = malloc(T * d * sizeof *r);
    float *hid1 = malloc(T * f * sizeof *hid1), *hid2 = malloc(T * f * sizeof *hid2);
    memcpy(r, y, T * d * sizeof *r);
    const float y00_before = y[0];
    us_swiglu_ffn_forward(y, h, w1, w3, w2, hid1, hid2, T, d, f);
    us_swiglu_ffn_ref(r, h, w1, w3, w2, hid1, hid2, T, d, f);
    assert_close(y, r, T * d, 1e-5f);
    /* one element in double, independently:
     * y[0][0] += sum_k silu((h W1)[0][k]) (h W3)[0][k] W2[k][0] */
    double want = y00_before;
    for (size_t k = 0; k < f; k++) {
        double g = 0, u = 0;
        for (size_t i = 0; i < d; i++) {
            g += (double)h[i] * w1[i * f + k];
            u += (double)h[i] * w3[i * f + k];
        }
        want += g / (1.0 + exp(-g)) * u * w2[k * d];
    }
    assert_true(fabs((double)y[0] - want) <= 1e-5 * (1.0 + fabs(want)));
    free(h), free(w1), free(w3), free(w2), free(y), free(r), free(hid1), free(hid2);
}

static void test_moe_dispatch_combine(void **state)
{
    (void)state;
    enum { T = 4, K = 2, D = 3 };
    const uint32_t expert_of[T * K] = { 0, 1, 1, 2, 0, 2, 1, 0 };
    float h[T * D];
    for (size_t i = 0; i < T * D; i++)
        h[i] = (float)i;
    float x_e[T * K * D];
    uint32_t slot[T * K];
    size_t n = us_moe_dispatch(x_e, slot, h, expert_of, T, K, D, 1);
    assert_int_equal(n, 3);
    const uint32_t want_slot[3] = { 1, 2, 6 };   /* tokens 0, 1, 3 */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(slot[i], want_slot[i]);
        assert_memory_equal(x_e + i * D, h + (want_slot[i] / K) * D, D * sizeof(float));
    }
    assert_int_equal(us_moe_dispatch(x_e, slot, h, expert_of, T, K, D, 5), 0);
    n = us_moe_dispatch(x_e, slot, h, expert_of, T, K, D, 1);
    float gate[T * K];
    for (size_t i = 0; i < T * K; i++)
        gate[i] = 0.25f * (float)(i + 1);
    float x[T * D] = { 0 };
    us_moe_combine(x, x_e, slot, gate, n, K, D);
    /* token 0 gets gate[1] * h[0], token 1 gate[2] * h[1], token 3 gate[6] * h[3] */
    for (size_t c = 0; c < D; c++) {
        assert_true(x[0 * D + c] == 0.5f * h[0 * D + c]);
        assert_true(x[1 * D + c] == 0.75f * h[1 * D + c]);
        assert_true(x[2 * D + c] == 0.0f);
        assert_true(x[3 * D + c] == 1.75f * h[3 * D + c]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_known),
        cmocka_unit_test(test_matmul_fast_vs_ref),
        cmocka_unit_test(test_axpy_and_add),
        cmocka_unit_test(test_add_inplace_fast_vs_ref),
        cmocka_unit_test(test_add_to_zero_vs_zero_then_add),
        cmocka_unit_test(test_swiglu_ffn_fast_vs_ref),
        cmocka_unit_test(test_moe_dispatch_combine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
