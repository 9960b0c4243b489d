/* test_topk.c — fast top-k (AVX2 filter + sorted insertion) vs full-sort reference: random sizes, heavy ties,
 * NaN/Inf/-0, k = 1 and k = n, batched rows, a hand-checked example, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/topk.h"
#include "kernels/hash.h"

static uint64_t rng_state = 42;
static int isa_level = 2;                /* the group's us_topk_limit_isa */
static uint64_t rng_next(void)
{
    return us_splitmix64_next(&rng_state);
}

/* kind 0: continuous; 1: few distinct values (ties); 2: specials mixed in */
static float random_score(int kind)
{
    uint64_t r = rng_next();
    switch (kind) {
    case 1: return (float)(int)(r % 5) - 2.0f;
    case 2:
        switch (r % 16) {
        case 0: return NAN;
        case 1: return INFINITY;
        case 2: return -INFINITY;
        case 3: return -0.0f;
        case 4: return 0.0f;
        default: break;
        }
        /* fall through */
    default: return (float)((r >> 40) * 0x1.0p-24) - 0.5f;
    }
}

/* us_topk_set (vs its reference and vs us_topk's list ia/va), us_topk_hint
 * with good, useless and wrong bounds (always the same result), and
 * us_topk_bound <= the k-th best. */
static void compare_set_and_hint(const float *s, size_t n, size_t k, const uint32_t *ia,
                                 const float *va)
{
    uint32_t set[US_TOPK_MAX_K], rank[US_TOPK_MAX_K], set_ref[US_TOPK_MAX_K],
             rank_ref[US_TOPK_MAX_K];
    assert_int_equal(us_topk_set(set, rank, s, n, k, NULL), US_OK);
    assert_int_equal(us_topk_set_ref(set_ref, rank_ref, s, n, k, NULL), US_OK);
    assert_memory_equal(set, set_ref, k * sizeof set[0]);
    assert_memory_equal(rank, rank_ref, k * sizeof rank[0]);
    for (size_t q = 0; q < k; q++) {
        assert_true(q == 0 || set[q - 1] < set[q]);
        assert_true(rank[q] < k);
        assert_int_equal(ia[rank[q]], set[q]);
    }
    float bound = us_topk_bound(s, n, k);
    float kth = va[k - 1];
    if (n > 2048 || isnan(kth) || kth == -INFINITY)
        assert_true(bound == -INFINITY);
    else if (isa_level == 0 || !__builtin_cpu_supports("avx2"))   /* no fast path: no bound */
        assert_true(bound == -INFINITY);
    else
        assert_true(bound <= kth && bound > -INFINITY);
    if (bound > -INFINITY && isnormal(kth))     /* the precision topk.h promises */
        assert_true(bound >= kth - fabsf(kth) * 0x1p-8f);
    const float hints[] = { bound, kth, va[0], INFINITY, -INFINITY, NAN,
                            isnan(kth) ? 0.0f : nextafterf(kth, INFINITY) };
    for (size_t h = 0; h < sizeof hints / sizeof hints[0]; h++) {
        uint32_t ib[US_TOPK_MAX_K];
        float vb[US_TOPK_MAX_K];
        assert_int_equal(us_topk_hint(ib, vb, s, n, k, hints[h], NULL), US_OK);
        assert_memory_equal(ib, ia, k * sizeof ib[0]);
        assert_memory_equal(vb, va, k * sizeof vb[0]);
    }
}

static void compare_one(const float *s, size_t n, size_t k)
{
    uint32_t ia[US_TOPK_MAX_K], ib[US_TOPK_MAX_K];
    float va[US_TOPK_MAX_K], vb[US_TOPK_MAX_K];
    us_err e = {0};
    if (us_topk(ia, va, s, n, k, &e) != US_OK)
        fail_msg("n %zu k %zu: %s", n, k, e.msg);
    assert_int_equal(us_topk_ref(ib, vb, s, n, k, NULL), US_OK);
    assert_memory_equal(ia, ib, k * sizeof ia[0]);
    assert_memory_equal(va, vb, k * sizeof va[0]);
    /* independent check of the order: each output ranks before the next,
     * and nothing left out ranks before the last output */
    for (size_t i = 0; i + 1 < k; i++)
        assert_true(us_topk_before(va[i], ia[i], va[i + 1], ia[i + 1]));
    char *taken = calloc(n, 1);
    assert_non_null(taken);
    for (size_t i = 0; i < k; i++) {
        assert_true(ia[i] < n);
        assert_false(taken[ia[i]]);
        taken[ia[i]] = 1;
        assert_memory_equal(&va[i], &s[ia[i]], 4);
    }
    for (size_t j = 0; j < n; j++)
        if (!taken[j])
            assert_false(us_topk_before(s[j], (uint32_t)j, va[k - 1], ia[k - 1]));
    free(taken);
    compare_set_and_hint(s, n, k, ia, va);
}

static void test_random_vs_ref(void **state)
{
    (void)state;
    static const size_t ns[] = { 1, 2, 7, 8, 9, 31, 100, 1000, 4097 };
    float *s = malloc(65536 * sizeof *s);
    assert_non_null(s);
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            size_t n = ns[a];
            for (size_t i = 0; i < n; i++)
                s[i] = random_score(kind);
            size_t ks[] = { 1, n < 2 ? n : 2, n < 16 ? n : 16, n < 256 ? n : 256, n / 2 ? (n / 2 < 256 ? n / 2 : 255) : 1 };
            for (size_t b = 0; b < 5; b++)
                compare_one(s, n, ks[b]);
        }
    /* the largest supported shape: n = 65,536, k = 256; ascending input makes
     * every element enter the kept list (worst case for the fast path) */
    for (size_t i = 0; i < 65536; i++)
        s[i] = random_score(0);
    compare_one(s, 65536, 256);
    for (size_t i = 0; i < 65536; i++)
        s[i] = (float)i;
    compare_one(s, 65536, 256);
    free(s);
}

static void test_known_example(void **state)
{
    (void)state;
    /* -0 == +0 ties go to the lower index; NaN ranks below -Inf */
    const float s[8] = { 1.0f, NAN, 3.0f, -0.0f, 3.0f, -INFINITY, 0.0f, NAN };
    uint32_t idx[8];
    float val[8];
    assert_int_equal(us_topk(idx, val, s, 8, 8, NULL), US_OK);
    const uint32_t want[8] = { 2, 4, 0, 3, 6, 5, 1, 7 };
    assert_memory_equal(idx, want, sizeof want);
    assert_true(signbit(val[3]) && val[3] == 0.0f);
    assert_true(isinf(val[5]) && isnan(val[6]) && isnan(val[7]));
    assert_int_equal(us_topk(idx, NULL, s, 8, 3, NULL), US_OK);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 4);
    assert_int_equal(idx[2], 0);
    /* all NaN: by index */
    const float nans[4] = { NAN, NAN, NAN, NAN };
    assert_int_equal(us_topk(idx, val, nans, 4, 2, NULL), US_OK);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    /* NaNs first, then numbers: the numbers must displace them */
    const float late[6] = { NAN, NAN, NAN, -5.0f, NAN, -6.0f };
    assert_int_equal(us_topk(idx, val, late, 6, 3, NULL), US_OK);
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 5);
    assert_int_equal(idx[2], 0);
}

static void test_rows(void **state)
{
    (void)state;
    enum { R = 13, N = 300, LD = 310, K = 17 };
    float *s = malloc(R * LD * sizeof *s);
    assert_non_null(s);
    for (size_t i = 0; i < R * LD; i++)
        s[i] = random_score((int)(i / LD) % 3);
    uint32_t ia[R * K], ib[R * K];
    float va[R * K], vb[R * K];
    for (int nt = 0; nt <= 2; nt++) {
        memset(ia, 0, sizeof ia);
        assert_int_equal(us_topk_rows(ia, va, s, R, N, LD, K, nt, NULL), US_OK);
        assert_int_equal(us_topk_rows_ref(ib, vb, s, R, N, LD, K, NULL), US_OK);
        assert_memory_equal(ia, ib, sizeof ia);
        assert_memory_equal(va, vb, sizeof va);
    }
    for (size_t r = 0; r < R; r++) {      /* each row equals the single form */
        uint32_t one[K];
        assert_int_equal(us_topk(one, NULL, s + r * LD, N, K, NULL), US_OK);
        assert_memory_equal(one, ia + r * K, sizeof one);
    }
    free(s);
}

static void test_errors(void **state)
{
    (void)state;
    {
        const float s3[3] = { 1, 2, 3 };
        uint32_t i3[3];
        us_err e = {0};
        assert_int_equal(us_topk_set(i3, NULL, s3, 3, 2, &e), US_EINVAL);
        assert_int_equal(us_topk_set(i3, i3, s3, 3, 4, &e), US_EINVAL);
        assert_int_equal(us_topk_hint(i3, NULL, s3, 3, 4, 1.0f, &e), US_EINVAL);
        assert_true(us_topk_bound(s3, 3, 4) == -INFINITY);
        assert_true(us_topk_bound(s3, 3, 0) == -INFINITY);
        assert_true(us_topk_bound(NULL, 3, 1) == -INFINITY);
    }
    float s[4] = { 1, 2, 3, 4 };
    uint32_t idx[300] = { 7 };
    us_err err = { 0 };
    assert_int_equal(us_topk(idx, NULL, s, 4, 5, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "k 5 > n 4"));
    assert_int_equal(idx[0], 7);
    assert_int_equal(us_topk(idx, NULL, s, 4, 0, NULL), US_OK);
    assert_int_equal(idx[0], 7);
    float *big = calloc(1000, sizeof *big);
    assert_non_null(big);
    assert_int_equal(us_topk(idx, NULL, big, 1000, 257, &err), US_EINVAL);
    assert_int_equal(us_topk_ref(idx, NULL, big, 1000, 257, NULL), US_EINVAL);
    free(big);
    assert_int_equal(us_topk(NULL, NULL, s, 4, 2, NULL), US_EINVAL);
    assert_int_equal(us_topk(idx, NULL, NULL, 4, 2, NULL), US_EINVAL);
    assert_int_equal(us_topk_rows(idx, NULL, s, 2, 2, 1, 1, 1, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "ld 1 < n 2"));
}

/* The AVX2 / AVX-512 filter's lower bound (smallest of k block maxima): all-equal
 * scores (every element ties with the bound), a block of only NaN (bound
 * -Inf: full scan), the k-th best sitting exactly on the bound, -0/+0. */
static void test_filter_edges(void **state)
{
    (void)state;
    enum { N = 4096, K = 32 };
    static float s[N];
    for (size_t i = 0; i < N; i++)
        s[i] = 1.0f;
    compare_one(s, N, K);
    uint32_t idx[K];
    assert_int_equal(us_topk(idx, NULL, s, N, K, NULL), US_OK);
    for (uint32_t i = 0; i < K; i++)
        assert_int_equal(idx[i], i);            /* all ties: lowest indices */
    for (size_t i = 0; i < N; i++)
        s[i] = random_score(0);
    for (size_t i = 128; i < 256; i++)
        s[i] = NAN;                             /* block 1 of 32 has no number */
    compare_one(s, N, K);
    for (size_t i = 0; i < N; i++)              /* block maxima all equal 0.5 */
        s[i] = (i % 128 == 77) ? 0.5f : (i % 3 ? -0.0f : 0.0f);
    compare_one(s, N, K);
    compare_one(s, N, 1);
    compare_one(s, N, 64);
    for (size_t i = 0; i < N; i++)
        s[i] = (i % 128 == 5) ? -INFINITY : NAN;  /* maxima -Inf: full scan */
    compare_one(s, N, K);
    /* all negative, magnitudes from denormal to 1e30: the bound's key is
     * truncated in the negative range, where truncation moves it down */
    for (size_t i = 0; i < N; i++) {
        float mag = ldexpf(1.0f + (float)(rng_next() % 1000) / 1000.0f,
                           (int)(rng_next() % 250) - 149);
        s[i] = -mag;
    }
    compare_one(s, N, K);
    compare_one(s, N, 256);
    /* UltraMem's preselection shape (n = 606, k = 32): 72 (AVX2) or 64
     * (AVX-512) groups of 8 for the bound, not covering the last scores;
     * random, ties, and the best ones outside the groups */
    for (size_t i = 0; i < 606; i++)
        s[i] = random_score(0);
    compare_one(s, 606, K);
    for (size_t i = 0; i < 606; i++)
        s[i] = (float)(rng_next() % 5);
    compare_one(s, 606, K);
    for (size_t i = 0; i < 606; i++)
        s[i] = i >= 576 ? 2.0f + (float)i : random_score(0);
    compare_one(s, 606, K);
    for (size_t i = 0; i < N; i++)               /* values that differ in the low bits only */
        s[i] = 1.0f + (float)(rng_next() % 64) * 0x1.0p-23f;
    compare_one(s, N, K);
    compare_one(s, N, 200);
}

/* us_topk_distinct: the k best of distinct scores, best first, equal to
 * us_topk_ref's order with the keys in place of indices; 0 on a tie, a NaN,
 * c < k, k = 0 or too many candidates. */
static void test_distinct(void **state)
{
    (void)state;
    enum { C = 100 };
    float val[C], out_val[40], ref_val[40];
    uint32_t key[C], out_key[40], ref_idx[40];
    size_t sizes[] = { 1, 7, 16, 33, 64, C };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t c = sizes[si], k = c < 32 ? c : 32;
        for (size_t i = 0; i < c; i++) {          /* distinct: a permutation, scaled */
            val[i] = (float)((i * 37 + 11) % c) * 0.25f - 3.0f;
            key[i] = (uint32_t)(1000 + 7 * i);
        }
        assert_int_equal(us_topk_distinct(out_key, out_val, val, key, c, k), 1);
        assert_int_equal(us_topk_ref(ref_idx, ref_val, val, c, k, NULL), US_OK);
        for (size_t r = 0; r < k; r++) {
            assert_int_equal(out_key[r], key[ref_idx[r]]);
            assert_true(out_val[r] == ref_val[r]);
        }
        if (c >= 2) {
            float keep = val[1];
            val[1] = val[0];                   /* a tie */
            assert_int_equal(us_topk_distinct(out_key, out_val, val, key, c, k), 0);
            val[1] = NAN;
            assert_int_equal(us_topk_distinct(out_key, out_val, val, key, c, k), 0);
            val[1] = keep;
        }
    }
    val[0] = NAN;
    assert_int_equal(us_topk_distinct(out_key, out_val, val, key, 1, 1), 0);
    val[0] = 1.0f;
    assert_int_equal(us_topk_distinct(out_key, out_val, val, key, 1, 2), 0);   /* c < k */
    assert_int_equal(us_topk_distinct(out_key, out_val, val, key, 1, 0), 0);
    float *many = malloc(5000 * sizeof *many);
    uint32_t *many_keys = malloc(5000 * sizeof *many_keys);
    assert_true(many && many_keys);
    for (int i = 0; i < 5000; i++) {
        many[i] = (float)i;
        many_keys[i] = (uint32_t)i;
    }
    assert_int_equal(us_topk_distinct(out_key, out_val, many, many_keys, 5000, 8), 0);
    free(many);
    free(many_keys);
}

/* Every path: the whole group once per instruction-set limit (portable
 * scan, AVX2 filter, AVX-512 filter where the CPU has it). */
static int limit_portable(void **state) { (void)state; us_topk_limit_isa(isa_level = 0); return 0; }
static int limit_avx2(void **state) { (void)state; us_topk_limit_isa(isa_level = 1); return 0; }
static int limit_none(void **state) { (void)state; us_topk_limit_isa(isa_level = 2); return 0; }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_vs_ref),
        cmocka_unit_test(test_known_example),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_filter_edges),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_distinct),
    };
    int failed = cmocka_run_group_tests_name("portable", tests, limit_portable, limit_none);
    failed += cmocka_run_group_tests_name("avx2", tests, limit_avx2, limit_none);
    failed += cmocka_run_group_tests_name("widest", tests, limit_none, NULL);
    return failed;
}
