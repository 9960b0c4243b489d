/* test_nn.c — neural-net kernels: known values, fast path vs scalar reference,
 * edge cases (length-1 segments, odd dims, NaN/Inf, first-segment memory). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/infini.h"
#include "kernels/ive.h"
#include "kernels/norm.h"
#include "kernels/us_status.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)  /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static float *rand_array(size_t n, float scale)
{
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = frand() * scale;
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

static void test_norms_known(void **state)
{
    (void)state;
    float x[2 * 3] = { 3, 4, 0, 1, 2, 3 };
    float w[3] = { 1, 2, 1 };
    float y[6];
    us_rmsnorm_forward(y, x, w, 2, 3, 0.0f);
    float r0 = sqrtf(25.0f / 3.0f), r1 = sqrtf(14.0f / 3.0f);
    float want[6] = { 3 / r0, 8 / r0, 0, 1 / r1, 4 / r1, 3 / r1 };
    assert_close(y, want, 6, 1e-6f);
    float b[3] = { 0.5f, 0, -1 };
    us_layernorm_forward(y, x + 3, NULL, b, 1, 3, 0.0f);
    float s = sqrtf(1.5f);  /* 1/sqrt(var = 2/3) */
    float want_ln[3] = { -s + 0.5f, 0.0f, s - 1.0f };
    assert_close(y, want_ln, 3, 1e-6f);
    /* in place, eps matters for an all-zero row */
    float zeros[4] = { 0 };
    us_rmsnorm_forward(zeros, zeros, NULL, 1, 4, 1e-5f);
    for (int i = 0; i < 4; i++)
        assert_true(zeros[i] == 0.0f);
    /* NaN poisons only its own row */
    float xn[6] = { 1, NAN, 2, 1, 2, 3 };
    us_layernorm_forward(y, xn, w, NULL, 2, 3, 1e-5f);
    assert_true(isnan(y[0]) && isnan(y[2]));
    assert_false(isnan(y[3]) || isnan(y[4]) || isnan(y[5]));
    us_rmsnorm_forward(y, xn, w, 2, 3, 1e-5f);
    assert_true(isnan(y[0]));
    assert_false(isnan(y[5]));
}

static void test_softmax(void **state)
{
    (void)state;
    float x[3] = { 1, 2, 3 }, y[3];
    us_softmax_rows(y, x, 1, 3);
    float e = expf(1) + expf(2) + expf(3);
    float want[3] = { expf(1) / e, expf(2) / e, expf(3) / e };
    assert_close(y, want, 3, 1e-6f);
    float big[2] = { 1000.0f, 1001.0f };  /* naive exp overflows */
    us_softmax_rows(big, big, 1, 2);
    float want_big[2] = { 1 / (1 + expf(1)), 1 / (1 + expf(-1)) };
    assert_close(big, want_big, 2, 1e-6f);
    float masked[3] = { -INFINITY, -INFINITY, -INFINITY };
    us_softmax_rows(masked, masked, 1, 3);
    for (int i = 0; i < 3; i++)
        assert_true(masked[i] == 0.0f);
    float one = 42.0f;
    us_softmax_rows(&one, &one, 1, 1);
    assert_true(one == 1.0f);
    float rows[6] = { NAN, 0, 1, -INFINITY, 0, 0 };
    us_softmax_rows(rows, rows, 2, 3);
    assert_true(isnan(rows[0]) && isnan(rows[1]) && isnan(rows[2]));
    assert_true(rows[3] == 0.0f && fabsf(rows[4] - 0.5f) < 1e-7f);
    float inf_row[2] = { INFINITY, 0 };
    us_softmax_rows(inf_row, inf_row, 1, 2);
    assert_true(isnan(inf_row[0]));
}

static void test_activations(void **state)
{
    (void)state;
    float x[5] = { -2, 0, 1.5f, -100, 100 }, y[5];
    us_elu1(y, x, 5);
    float want_elu[5] = { expf(-2), 1, 2.5f, expf(-100), 101 };
    assert_close(y, want_elu, 5, 1e-6f);
    us_silu(y, x, 5);
    for (int i = 0; i < 5; i++)
        assert_true(fabsf(y[i] - x[i] / (1 + expf(-x[i]))) <= 1e-6f * (1 + fabsf(y[i])));
    assert_true(y[3] == -0.0f || fabsf(y[3]) < 1e-30f);  /* no NaN from exp overflow */
    float up[5] = { 2, 2, 2, 2, 2 };
    float g[5];
    us_swiglu(g, x, up, 5);
    for (int i = 0; i < 5; i++)
        assert_true(fabsf(g[i] - 2 * y[i]) <= 1e-6f * (1 + fabsf(g[i])));
    assert_true(us_sigmoidf(0) == 0.5f);
    assert_true(us_sigmoidf(-1000) == 0.0f && us_sigmoidf(1000) == 1.0f);
    assert_true(isnan(us_sigmoidf(NAN)) && isnan(us_elu1f(NAN)));
}

static void check_attention(size_t n_q, size_t n_kv, size_t H, size_t dh)
{
    size_t w = H * dh;
    float *q = rand_array(n_q * w, 2), *k = rand_array(n_kv * w, 2), *v = rand_array(n_kv * w, 1);
    float *fast = calloc(n_q * w, 4), *ref = calloc(n_q * w, 4), *scratch = calloc((n_q > H ? n_q : H) * n_kv, 4);
    assert_int_equal(us_causal_attention_forward(fast, scratch, q, k, v, n_q, n_kv, H, dh), US_OK);
    assert_int_equal(us_causal_attention_ref(ref, q, k, v, n_q, n_kv, H, dh), US_OK);
    assert_close(fast, ref, n_q * w, 2e-5f);
    /* the first query of a full segment sees only key 0: its output is v[0] */
    if (n_q == n_kv)
        assert_close(ref, v, w, 1e-6f);
    free(q); free(k); free(v); free(fast); free(ref); free(scratch);
}

static void test_attention_fast_vs_ref(void **state)
{
    (void)state;
    check_attention(1, 1, 1, 1);     /* length-1 segment */
    check_attention(1, 1, 2, 5);
    check_attention(7, 7, 3, 5);     /* dims not multiple of 8 */
    check_attention(16, 16, 2, 32);
    check_attention(1, 9, 2, 13);    /* decode one token against a cache */
    check_attention(3, 10, 4, 8);
    /* up to 4 queries take the direct (no-sgemm) path, 5 the sgemm one:
     * both sides of the switch, at the bench models' head shape */
    check_attention(1, 65, 4, 64);
    check_attention(4, 70, 2, 64);
    check_attention(5, 70, 2, 64);
}

static void test_attention_known_and_edges(void **state)
{
    (void)state;
    /* zero queries: uniform weights -> output i is the mean of v[0..i] */
    float q[3 * 2] = { 0 }, k[3 * 2] = { 1, 2, 3, 4, 5, 6 }, v[3 * 2] = { 1, 10, 2, 20, 6, 60 };
    float out[6], scratch[9];
    assert_int_equal(us_causal_attention_forward(out, scratch, q, k, v, 3, 3, 1, 2), US_OK);
    float want[6] = { 1, 10, 1.5f, 15, 3, 30 };
    assert_close(out, want, 6, 1e-6f);
    assert_int_equal(us_causal_attention_forward(out, scratch, q, k, v, 4, 3, 1, 2), US_EINVAL);
    assert_int_equal(us_causal_attention_ref(out, q, k, v, 2, 3, 0, 2), US_EINVAL);
    assert_int_equal(us_causal_attention_ref(out, q, k, v, 0, 3, 1, 2), US_OK);
    /* NaN in the first value reaches every query; no crash; Inf key too */
    v[0] = NAN;
    assert_int_equal(us_causal_attention_forward(out, scratch, q, k, v, 3, 3, 1, 2), US_OK);
    assert_true(isnan(out[0]) && isnan(out[4]) && !isnan(out[1]));
    assert_int_equal(us_causal_attention_ref(out, q, k, v, 3, 3, 1, 2), US_OK);
    assert_true(isnan(out[0]) && isnan(out[4]) && !isnan(out[1]));
    v[0] = 1;
    q[4] = 1; k[2] = INFINITY;  /* query 2 scores +Inf against key 1 */
    assert_int_equal(us_causal_attention_ref(out, q, k, v, 3, 3, 1, 2), US_OK);
    assert_true(isnan(out[4]));
    assert_false(isnan(out[0]));
}

static void test_infini_first_segment_and_known(void **state)
{
    (void)state;
    /* H=1, dk=dv=1: k=0 -> s=1; v=2. */
    float M = 0, z = 0, scratch[4];
    float q0 = 0, a;
    us_infini_retrieve(&a, scratch, &q0, &M, &z, 1, 1, 1, 1);
    assert_true(a == 0.0f);                 /* 0/0 guarded to 0 */
    us_infini_retrieve_ref(&a, &q0, &M, &z, 1, 1, 1, 1);
    assert_true(a == 0.0f);
    float k0 = 0, v2 = 2;
    us_infini_update(&M, &z, scratch, &k0, &v2, 1, 1, 1, 1, US_INFINI_DELTA);
    assert_true(M == 2.0f && z == 1.0f);    /* first delta update adds V as is */
    us_infini_retrieve(&a, scratch, &q0, &M, &z, 1, 1, 1, 1);
    assert_true(a == 2.0f);
    us_infini_update(&M, &z, scratch, &k0, &v2, 1, 1, 1, 1, US_INFINI_DELTA);
    assert_true(M == 2.0f && z == 2.0f);    /* already stored: delta adds nothing */
    us_infini_update(&M, &z, scratch, &k0, &v2, 1, 1, 1, 1, US_INFINI_LINEAR);
    assert_true(M == 4.0f && z == 3.0f);
    /* gate: beta 0 is the plain average; large beta selects memory */
    float am[2] = { 1, 3 }, ad[2] = { 3, 5 }, beta[2] = { 0, 50 }, out[2];
    us_infini_gate(out, am, ad, beta, 1, 2, 1);
    assert_true(out[0] == 2.0f && fabsf(out[1] - 3.0f) < 1e-6f);
}

static void check_infini(size_t T, size_t H, size_t dk, size_t dv, us_infini_rule rule)
{
    size_t mn = H * dk * dv;
    float *M1 = rand_array(mn, 0.5f), *z1 = rand_array(H * dk, 1);
    for (size_t i = 0; i < H * dk; i++)
        z1[i] = fabsf(z1[i]) + 0.1f;
    float *M2 = malloc(mn * 4), *z2 = malloc(H * dk * 4);
    memcpy(M2, M1, mn * 4);
    memcpy(z2, z1, H * dk * 4);
    float *q = rand_array(T * H * dk, 1.5f), *k = rand_array(T * H * dk, 1.5f);
    float *v = rand_array(T * H * dv, 1);
    float *scratch = malloc(T * (dk + dv) * 4);
    float *a1 = malloc(T * H * dv * 4), *a2 = malloc(T * H * dv * 4);
    us_infini_retrieve(a1, scratch, q, M1, z1, T, H, dk, dv);
    us_infini_retrieve_ref(a2, q, M1, z1, T, H, dk, dv);
    assert_close(a1, a2, T * H * dv, 2e-5f);
    us_infini_update(M1, z1, scratch, k, v, T, H, dk, dv, rule);
    us_infini_update_ref(M2, z2, scratch, k, v, T, H, dk, dv, rule);
    assert_close(M1, M2, mn, 2e-5f);
    assert_close(z1, z2, H * dk, 1e-6f);
    free(M1); free(M2); free(z1); free(z2); free(q); free(k); free(v);
    free(scratch); free(a1); free(a2);
}

static void test_infini_fast_vs_ref(void **state)
{
    (void)state;
    for (int rule = 0; rule < 2; rule++) {
        check_infini(1, 1, 1, 1, (us_infini_rule)rule);
        check_infini(1, 2, 5, 7, (us_infini_rule)rule);
        check_infini(9, 3, 7, 5, (us_infini_rule)rule);
        check_infini(16, 2, 32, 32, (us_infini_rule)rule);
        /* retrieve: direct path up to 4 tokens, sgemm from 5 */
        check_infini(1, 4, 64, 64, (us_infini_rule)rule);
        check_infini(4, 2, 16, 24, (us_infini_rule)rule);
        check_infini(5, 2, 16, 24, (us_infini_rule)rule);
    }
}

static void test_infini_nan(void **state)
{
    (void)state;
    float M[4] = { 1, 2, 3, 4 }, z[2] = { 1, 1 }, scratch[8];
    float q[2] = { NAN, 0 }, a[2];
    us_infini_retrieve(a, scratch, q, M, z, 1, 1, 2, 2);
    assert_true(isnan(a[0]) && isnan(a[1]));
    float k[2] = { 0, INFINITY }, v[2] = { 1, 1 };
    us_infini_update(M, z, scratch, k, v, 1, 1, 2, 2, US_INFINI_DELTA);
    /* s(k) = [1, Inf]: Inf/Inf retrieved -> NaN delta -> every M entry NaN */
    for (int i = 0; i < 4; i++)
        assert_true(isnan(M[i]));
    assert_true(z[0] == 2.0f && isinf(z[1]));
}

static void test_ive(void **state)
{
    (void)state;
    /* T=1, 2 groups of v_dim 1, d_out 2: out = P0*W0 + P1*W1 */
    float pooled[2] = { 2, 3 }, W[4] = { 1, 10, 100, 1000 }, out[2] = { 5, 5 };
    us_ive_project(out, pooled, W, 1, 2, 1, 2, 1);
    assert_true(out[0] == 5 + 2 + 300 && out[1] == 5 + 20 + 3000);
    us_ive_project_ref(out, pooled, W, 1, 2, 1, 2, 0);
    assert_true(out[0] == 302 && out[1] == 3020);
    size_t T = 5, E = 4, vd = 7, d = 9;
    float *P = rand_array(T * E * vd, 1), *Wr = rand_array(E * vd * d, 1);
    float *o1 = rand_array(T * d, 1), *o2 = malloc(T * d * 4);
    memcpy(o2, o1, T * d * 4);
    us_ive_project(o1, P, Wr, T, E, vd, d, 1);
    us_ive_project_ref(o2, P, Wr, T, E, vd, d, 1);
    assert_close(o1, o2, T * d, 1e-5f);
    free(P); free(Wr); free(o1); free(o2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norms_known),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_attention_fast_vs_ref),
        cmocka_unit_test(test_attention_known_and_edges),
        cmocka_unit_test(test_infini_first_segment_and_known),
        cmocka_unit_test(test_infini_fast_vs_ref),
        cmocka_unit_test(test_infini_nan),
        cmocka_unit_test(test_ive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
