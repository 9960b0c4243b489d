/* test_rope.c — RoPE (kernels/rope.h) against the closed form of a 2-D
 * rotation, its relative-position property and the scalar reference; the L2
 * row normalisation (kernels/norm.h) against hand values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/norm.h"
#include "kernels/rope.h"

/* head_dim 2: inv_freq[0] = 1, so position p rotates (x, y) by p radians. */
static void test_rope_closed_form(void **state)
{
    (void)state;
    float in[6 * 2], out[6 * 2], ref[6 * 2];
    for (int p = 0; p < 6; p++) {
        in[2 * p] = 1.0f;
        in[2 * p + 1] = 0.5f;
    }
    us_rope_forward(out, in, 6, 1, 2, 0, 10000.0f);
    us_rope_ref(ref, in, 6, 1, 2, 0, 10000.0f);
    for (int p = 0; p < 6; p++) {
        float c = cosf((float)p), s = sinf((float)p);
        assert_float_equal(out[2 * p], 1.0f * c - 0.5f * s, 1e-6);
        assert_float_equal(out[2 * p + 1], 0.5f * c + 1.0f * s, 1e-6);
        assert_float_equal(ref[2 * p], out[2 * p], 1e-6);
        assert_float_equal(ref[2 * p + 1], out[2 * p + 1], 1e-6);
    }
    /* head_dim 4, theta 100: pair 1 turns at 100^(-1/2) = 0.1 rad per step,
     * half-split pairing: element 1 pairs with element 3 */
    float x[4] = { 0, 1, 0, 0 }, y[4];
    us_rope_forward(y, x, 1, 1, 4, 7, 100.0f);
    assert_float_equal(y[1], cosf(0.7f), 1e-6);
    assert_float_equal(y[3], sinf(0.7f), 1e-6);
    assert_float_equal(y[0], 0.0f, 0.0);
    assert_float_equal(y[2], 0.0f, 0.0);
}

/* q(m) . k(n) depends on m - n only; norms are kept; forward == ref, also in
 * place and with pos0 > 0, several heads. */
static void test_rope_relative_and_ref(void **state)
{
    (void)state;
    enum { H = 3, D = 8, N = 12 };
    float q[N * H * D], k[N * H * D], qr[N * H * D], kr[N * H * D], ref[N * H * D];
    for (int i = 0; i < N * H * D; i++) {
        q[i] = sinf(0.37f * (float)i + 0.1f);
        k[i] = cosf(0.53f * (float)i - 0.2f);
    }
    /* the same q and k vectors at every row: rows differ only in position */
    for (int r = 1; r < N; r++) {
        memcpy(q + r * H * D, q, sizeof(float) * H * D);
        memcpy(k + r * H * D, k, sizeof(float) * H * D);
    }
    us_rope_forward(qr, q, N, H, D, 3, 500.0f);
    us_rope_forward(kr, k, N, H, D, 3, 500.0f);
    for (int h = 0; h < H; h++) {
        double d1 = 0, d2 = 0, n0 = 0, n1 = 0;
        for (int i = 0; i < D; i++) {
            d1 += (double)qr[(5 * H + h) * D + i] * kr[(2 * H + h) * D + i];
            d2 += (double)qr[(11 * H + h) * D + i] * kr[(8 * H + h) * D + i];
            n0 += (double)q[h * D + i] * q[h * D + i];
            n1 += (double)qr[(9 * H + h) * D + i] * qr[(9 * H + h) * D + i];
        }
        assert_true(fabs(d1 - d2) < 1e-5);
        assert_true(fabs(n0 - n1) < 1e-5);
    }
    us_rope_ref(ref, q, N, H, D, 3, 500.0f);
    for (int i = 0; i < N * H * D; i++)
        assert_float_equal(qr[i], ref[i], 1e-6);
    us_rope_forward(q, q, N, H, D, 3, 500.0f);   /* in place */
    assert_memory_equal(q, qr, sizeof q);
    /* an odd head_dim leaves the last element as it is */
    float odd[3] = { 1, 2, 3 }, odd_out[3];
    us_rope_forward(odd_out, odd, 1, 1, 3, 2, 10.0f);
    assert_float_equal(odd_out[2], 3.0f, 0.0);
}

static void test_l2norm(void **state)
{
    (void)state;
    float in[3 * 2] = { 3, 4, 0, 0, 1e-14f, 0 }, out[6];
    us_l2norm_forward(out, in, 3, 2, 1e-12f);
    assert_float_equal(out[0], 0.6f, 1e-7);
    assert_float_equal(out[1], 0.8f, 1e-7);
    assert_float_equal(out[2], 0.0f, 0.0);   /* zero row stays zero */
    assert_float_equal(out[3], 0.0f, 0.0);
    assert_float_equal(out[4], 1e-2f, 1e-8); /* below eps: divided by eps */
    us_l2norm_forward(in, in, 1, 2, 1e-12f); /* in place */
    assert_float_equal(in[0], 0.6f, 1e-7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_closed_form),
        cmocka_unit_test(test_rope_relative_and_ref),
        cmocka_unit_test(test_l2norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
