/*
 * test_score.c — product-key scoring: sgemm path vs loop reference; PKM and
 * rank-1 Tucker vs brute force over all n_rows*n_cols values (exact cases);
 * reported scores vs S_row^T C S_col in double; MCS; softmax; rank-1
 * factors; thread-count independence; NaN inputs; errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/score.h"
#include "kernels/topk.h"
#include "kernels/hash.h"

static uint64_t rng_state = 7;
static uint64_t rng_next(void)
{
    return us_splitmix64_next(&rng_state);
}
static float rng_unit(void) { return (float)((rng_next() >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }

typedef struct problem {
    us_pk_shape s;
    float *q, *k_row, *k_col, *core;
    uint64_t *idx, *idx_ref;
    float *sc, *sc_ref;
} problem;

/* nonneg: queries and keys in [0, 1) so every S entry is >= 0 */
static void problem_make(problem *p, us_pk_shape s, int nonneg)
{
    p->s = s;
    size_t T = s.n_tokens, H = s.n_heads, d = s.d_key, r = s.rank, m = s.n_cores;
    size_t nq = T * H * 2 * d, nkr = H * r * s.n_rows * d, nkc = H * r * s.n_cols * d;
    size_t no = T * H * s.k;
    p->q = malloc(nq * 4);
    p->k_row = malloc(nkr * 4);
    p->k_col = malloc(nkc * 4);
    p->core = malloc(H * m * r * r * 4);
    p->idx = malloc(no * 8);
    p->idx_ref = malloc(no * 8);
    p->sc = malloc(m * no * 4);
    p->sc_ref = malloc(m * no * 4);
    assert_true(p->q && p->k_row && p->k_col && p->core && p->idx && p->idx_ref &&
                p->sc && p->sc_ref);
    float *arrays[3] = { p->q, p->k_row, p->k_col };
    size_t counts[3] = { nq, nkr, nkc };
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < counts[a]; i++)
            arrays[a][i] = nonneg ? 0.5f * (rng_unit() + 1.0f) : rng_unit();
    for (size_t i = 0; i < H * m * r * r; i++)
        p->core[i] = rng_unit() + (i % (r + 1) == 0 ? 1.5f : 0.0f);   /* diagonal-heavy */
}

static void problem_free(problem *p)
{
    free(p->q); free(p->k_row); free(p->k_col); free(p->core);
    free(p->idx); free(p->idx_ref); free(p->sc); free(p->sc_ref);
}

static int run_fast(problem *p, int n_threads)
{
    size_t ws_bytes = us_pk_workspace_bytes(&p->s, n_threads);
    assert_true(ws_bytes > 0);
    void *ws = malloc(ws_bytes);
    assert_non_null(ws);
    us_err err = { 0 };
    int rc = us_pk_score(p->idx, p->sc, p->q, p->k_row, p->k_col,
                         p->s.mode == US_PK_TUCKER ? p->core : NULL, &p->s, ws, ws_bytes,
                         n_threads, &err);
    if (rc != US_OK)
        fail_msg("us_pk_score: %s", err.msg);
    free(ws);
    return rc;
}

static void run_ref(problem *p)
{
    us_err err = { 0 };
    int rc = us_pk_score_ref(p->idx_ref, p->sc_ref, p->q, p->k_row, p->k_col,
                             p->s.mode == US_PK_TUCKER ? p->core : NULL, &p->s, &err);
    if (rc != US_OK)
        fail_msg("us_pk_score_ref: %s", err.msg);
}

/* sgemm and loop dot products round differently: scores agree to a
 * tolerance; ids agree except between near-equal scores. */
static void compare_fast_ref(const problem *p, float tol)
{
    size_t n = (size_t)p->s.n_tokens * p->s.n_heads * p->s.k, k = (size_t)p->s.k;
    for (size_t i = 0; i < n * p->s.n_cores; i++)
        if (!(fabsf(p->sc[i] - p->sc_ref[i]) <= tol))
            fail_msg("score %zu: fast %.9g ref %.9g", i, p->sc[i], p->sc_ref[i]);
    size_t mismatches = 0;
    for (size_t i = 0; i < n; i++) {
        if (p->idx[i] == p->idx_ref[i])
            continue;
        mismatches++;
        size_t q = i % k;                    /* must sit next to a near tie */
        int near = (q > 0 && fabsf(p->sc_ref[i] - p->sc_ref[i - 1]) <= 2 * tol) ||
                   (q + 1 < k && fabsf(p->sc_ref[i] - p->sc_ref[i + 1]) <= 2 * tol) ||
                   q + 1 == k;
        if (!near)
            fail_msg("id %zu: fast %llu ref %llu at a clear gap", i,
                     (unsigned long long)p->idx[i], (unsigned long long)p->idx_ref[i]);
    }
    assert_true(mismatches <= n / 20);
}

/* S_row^T C S_col for one (token, head, row id), C = the sum of cores or one
 * core, in double. */
static double exact_score(const problem *p, size_t t, size_t h, uint64_t id, int core_only)
{
    const us_pk_shape *s = &p->s;
    size_t H = s->n_heads, d = s->d_key, r = s->rank, m = s->n_cores;
    size_t i = id / s->n_cols, j = id % s->n_cols;
    const float *qr = p->q + (t * H + h) * 2 * d, *qc = qr + d;
    double sr[US_PK_MAX_RANK], scol[US_PK_MAX_RANK];
    for (size_t a = 0; a < r; a++) {
        const float *kr = p->k_row + ((h * r + a) * s->n_rows + i) * d;
        const float *kc = p->k_col + ((h * r + a) * s->n_cols + j) * d;
        double x = 0, y = 0;
        for (size_t c = 0; c < d; c++) {
            x += (double)qr[c] * kr[c];
            y += (double)qc[c] * kc[c];
        }
        sr[a] = x;
        scol[a] = y;
    }
    if (s->mode == US_PK_SUM)
        return sr[0] + scol[0];
    double acc = 0;
    for (size_t c = 0; c < m; c++) {
        if (core_only >= 0 && (size_t)core_only != c)
            continue;
        const float *C = p->core + (h * m + c) * r * r;
        for (size_t a = 0; a < r; a++)
            for (size_t b = 0; b < r; b++)
                acc += sr[a] * C[a * r + b] * scol[b];
    }
    return acc;
}

/* Brute force over all values: the k best ids of (t, h) must equal ours. */
static void check_brute_force(const problem *p)
{
    const us_pk_shape *s = &p->s;
    size_t N = (size_t)s->n_rows * s->n_cols, k = s->k;
    double *all = malloc(N * sizeof *all);
    assert_non_null(all);
    for (size_t t = 0; t < (size_t)s->n_tokens; t++)
        for (size_t h = 0; h < (size_t)s->n_heads; h++) {
            for (size_t id = 0; id < N; id++)
                all[id] = exact_score(p, t, h, id, -1);
            const uint64_t *ours = p->idx + (t * s->n_heads + h) * k;
            /* no value outside our list may beat our k-th by more than slop */
            double kth = all[ours[k - 1]];
            for (size_t id = 0; id < N; id++) {
                int ours_has = 0;
                for (size_t q = 0; q < k; q++)
                    ours_has |= ours[q] == id;
                if (!ours_has && all[id] > kth + 1e-4)
                    fail_msg("t %zu h %zu: id %zu scores %.7g above our k-th %.7g",
                             t, h, id, all[id], kth);
            }
            for (size_t q = 0; q + 1 < k; q++)
                assert_true(all[ours[q]] >= all[ours[q + 1]] - 1e-4);
        }
    free(all);
}

static us_pk_shape shape(us_pk_mode mode, int T, int H, int d, int nr, int nc, int r, int m,
                         int kp, int k)
{
    us_pk_shape s = { T, H, d, nr, nc, r, m, kp, k, mode, US_PK_ACT_NONE };
    return s;
}

static void test_pkm_exact_and_vs_ref(void **state)
{
    (void)state;
    us_pk_shape shapes[] = {
        shape(US_PK_SUM, 5, 2, 16, 32, 32, 1, 1, 8, 8),
        shape(US_PK_SUM, 3, 3, 13, 17, 23, 1, 1, 5, 4),     /* odd sizes, n_rows != n_cols */
        shape(US_PK_SUM, 1, 1, 1, 4, 4, 1, 1, 4, 16),       /* k = k'^2 = N, d = 1 */
        shape(US_PK_SUM, 2, 1, 8, 9, 9, 1, 1, 1, 1),        /* k' = k = 1 */
        shape(US_PK_SUM, 2, 1, 4, 17000, 9, 1, 1, 8, 8),   /* n_rows > 16384 */
        /* large enough for the top-k filters on both sides and on the grid
         * (with the dominance bound): k <= k' (brute force) and k > k' */
        shape(US_PK_SUM, 4, 2, 16, 512, 512, 1, 1, 32, 16),
        shape(US_PK_SUM, 4, 2, 16, 512, 384, 1, 1, 16, 32),
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        problem p;
        problem_make(&p, shapes[i], 0);
        run_fast(&p, 1);
        run_ref(&p);
        compare_fast_ref(&p, 1e-4f);
        if (p.s.k <= p.s.k_pre || p.s.k_pre == p.s.n_rows)
            check_brute_force(&p);
        for (size_t j = 0; j < (size_t)p.s.n_tokens * p.s.n_heads * p.s.k; j++)
            assert_true(fabs(p.sc[j] - exact_score(&p, j / p.s.k / p.s.n_heads,
                                                   j / p.s.k % p.s.n_heads, p.idx[j], -1)) < 1e-4);
        problem_free(&p);
    }
}

static void test_tucker_vs_ref_and_exact_scores(void **state)
{
    (void)state;
    us_pk_shape shapes[] = {
        shape(US_PK_TUCKER, 6, 2, 16, 40, 40, 2, 1, 10, 12),
        shape(US_PK_TUCKER, 3, 1, 7, 21, 19, 3, 1, 6, 5),
        shape(US_PK_TUCKER, 4, 2, 8, 16, 16, 2, 2, 6, 6),    /* MCS, 2 cores */
        shape(US_PK_TUCKER, 4, 2, 16, 512, 384, 2, 1, 16, 32), /* filters, as above */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        problem p;
        problem_make(&p, shapes[i], 0);
        run_fast(&p, 2);
        run_ref(&p);
        compare_fast_ref(&p, 1e-4f);
        const us_pk_shape *s = &p.s;
        size_t n = (size_t)s->n_tokens * s->n_heads * s->k;
        for (size_t j = 0; j < n; j++) {
            size_t t = j / s->k / s->n_heads, h = j / s->k % s->n_heads;
            double sum = 0;
            for (int c = 0; c < s->n_cores; c++) {
                double want = exact_score(&p, t, h, p.idx[j], s->n_cores == 1 ? -1 : c);
                assert_true(fabs(p.sc[c * n + j] - want) < 1e-4 * (1 + fabs(want)));
                sum += p.sc[c * n + j];
            }
            /* ranking key is the sum over cores: non-increasing within a list */
            if (j % s->k) {
                double prev = 0;
                for (int c = 0; c < s->n_cores; c++)
                    prev += p.sc[c * n + j - 1];
                assert_true(prev >= sum - 1e-4);
            }
        }
        problem_free(&p);
    }
}

static void test_tucker_rank1_core_is_exact(void **state)
{
    (void)state;
    /* C = u t^T with u, t > 0 and S >= 0: the preselection loses nothing */
    problem p;
    problem_make(&p, shape(US_PK_TUCKER, 4, 2, 8, 24, 24, 2, 1, 6, 6), 1);
    for (int h = 0; h < 2; h++) {
        float u[2] = { 0.5f + h, 1.0f }, t[2] = { 2.0f, 0.25f + h };
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                p.core[h * 4 + a * 2 + b] = u[a] * t[b];
    }
    run_fast(&p, 1);
    check_brute_force(&p);
    problem_free(&p);
}

static void test_threads_and_softmax(void **state)
{
    (void)state;
    problem p;
    problem_make(&p, shape(US_PK_TUCKER, 9, 3, 12, 30, 30, 2, 1, 8, 10), 0);
    run_fast(&p, 1);
    size_t n = 9 * 3 * 10;
    uint64_t *idx1 = malloc(n * 8);
    float *sc1 = malloc(n * 4);
    assert_true(idx1 && sc1);
    memcpy(idx1, p.idx, n * 8);
    memcpy(sc1, p.sc, n * 4);
    run_fast(&p, 2);
    assert_memory_equal(idx1, p.idx, n * 8);
    assert_memory_equal(sc1, p.sc, n * 4);
    run_fast(&p, 0);
    assert_memory_equal(idx1, p.idx, n * 8);
    run_fast(&p, 4);                     /* 4 threads do not divide H = 3: one pass */
    assert_memory_equal(idx1, p.idx, n * 8);
    assert_memory_equal(sc1, p.sc, n * 4);
    problem p4;                          /* 2 threads divide H = 4: a head per thread */
    problem_make(&p4, shape(US_PK_SUM, 9, 4, 12, 64, 48, 1, 1, 8, 10), 0);
    size_t n4 = 9 * 4 * 10;
    run_fast(&p4, 1);
    memcpy(p4.idx_ref, p4.idx, n4 * 8);
    memcpy(p4.sc_ref, p4.sc, n4 * 4);
    run_fast(&p4, 2);
    assert_memory_equal(p4.idx_ref, p4.idx, n4 * 8);
    assert_memory_equal(p4.sc_ref, p4.sc, n4 * 4);
    problem_free(&p4);
    p.s.activation = US_PK_ACT_SOFTMAX;
    run_fast(&p, 2);
    assert_memory_equal(idx1, p.idx, n * 8);
    for (size_t l = 0; l < n / 10; l++) {
        double sum = 0, z = 0;
        for (int q = 0; q < 10; q++)
            z += exp((double)sc1[l * 10 + q] - sc1[l * 10]);
        for (int q = 0; q < 10; q++) {
            double want = exp((double)sc1[l * 10 + q] - sc1[l * 10]) / z;
            assert_true(fabs(p.sc[l * 10 + q] - want) < 1e-6);
            sum += p.sc[l * 10 + q];
        }
        assert_true(fabs(sum - 1.0) < 1e-5);
    }
    free(idx1);
    free(sc1);
    problem_free(&p);
}

static void test_rank1_factors(void **state)
{
    (void)state;
    float u[3], t[3];
    const float diag[4] = { 3, 0, 0, 1 };
    us_pk_rank1(u, t, diag, 2);
    assert_float_equal(u[0], 3, 1e-6); assert_float_equal(u[1], 0, 1e-6);
    assert_float_equal(t[0], 1, 1e-6); assert_float_equal(t[1], 0, 1e-6);
    const float zero[4] = { 0 };
    us_pk_rank1(u, t, zero, 2);
    assert_true(u[0] == 0 && u[1] == 0);
    /* all-ones start is orthogonal to the dominant direction (1, -1) */
    const float anti[4] = { 2, -2, -2, 2 };
    us_pk_rank1(u, t, anti, 2);
    assert_float_equal(u[0] * t[0], 2, 1e-5); assert_float_equal(u[0] * t[1], -2, 1e-5);
    /* a sign-negative rank-1 core is reproduced, with sum(u) >= 0 */
    const float neg[9] = { -1, -2, -3, -2, -4, -6, -0.5f, -1, -1.5f };  /* (-1,-2,-.5)(1,2,3)^T */
    us_pk_rank1(u, t, neg, 3);
    assert_true(u[0] + u[1] + u[2] >= 0);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            assert_float_equal(u[a] * t[b], neg[a * 3 + b], 1e-5);
    /* random 2x2: ||C - u t^T||_F^2 is the smaller singular value squared */
    for (int trial = 0; trial < 20; trial++) {
        float c[4];
        for (int i = 0; i < 4; i++)
            c[i] = rng_unit();
        us_pk_rank1(u, t, c, 2);
        double fro = 0, resid = 0;
        for (int i = 0; i < 4; i++)
            fro += (double)c[i] * c[i];
        double det = fabs((double)c[0] * c[3] - (double)c[1] * c[2]);
        double s2sq = (fro - sqrt(fro * fro - 4 * det * det)) / 2;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                double e = c[a * 2 + b] - (double)u[a] * t[b];
                resid += e * e;
            }
        assert_true(fabs(resid - s2sq) < 1e-4);
    }
}

static void test_nan_inputs_and_errors(void **state)
{
    (void)state;
    problem p;
    problem_make(&p, shape(US_PK_TUCKER, 2, 1, 4, 8, 8, 2, 1, 3, 4), 0);
    p.q[0] = NAN;                              /* token 0's row query */
    p.k_col[5] = INFINITY;
    run_fast(&p, 1);
    for (int j = 0; j < 8; j++)
        assert_true(p.idx[j] < 64);
    /* errors leave outputs untouched */
    memset(p.idx, 0x77, 8 * 8);
    us_err err = { 0 };
    uint8_t ws[64];
    assert_int_equal(us_pk_score(p.idx, p.sc, p.q, p.k_row, p.k_col, p.core, &p.s, ws,
                                 sizeof ws, 1, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "workspace"));
    assert_int_equal(us_pk_score(p.idx, p.sc, p.q, p.k_row, p.k_col, NULL, &p.s, ws,
                                 sizeof ws, 1, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "core"));
    us_pk_shape bad = p.s;
    bad.k_pre = 9;
    assert_int_equal(us_pk_shape_check(&bad, &err), US_EINVAL);
    assert_int_equal(us_pk_workspace_bytes(&bad, 1), 0);
    bad = p.s; bad.k = 10;                     /* > k'^2 = 9 */
    assert_int_equal(us_pk_shape_check(&bad, NULL), US_EINVAL);
    bad = p.s; bad.mode = US_PK_SUM;           /* rank 2 in sum mode */
    assert_int_equal(us_pk_shape_check(&bad, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "rank"));
    bad = p.s; bad.n_tokens = 0;
    assert_int_equal(us_pk_shape_check(&bad, NULL), US_EINVAL);
    bad = p.s; bad.rank = US_PK_MAX_RANK + 1;
    assert_int_equal(us_pk_shape_check(&bad, NULL), US_EINVAL);
    assert_int_equal(us_pk_score_ref(p.idx, p.sc, NULL, p.k_row, p.k_col, p.core, &p.s, NULL),
                     US_EINVAL);
    for (int j = 0; j < 8; j++)
        assert_true(p.idx[j] == 0x7777777777777777ull);
    problem_free(&p);
}

static void test_ties_go_to_lower_row_id(void **state)
{
    (void)state;
    /* small integers: every dot product is exact, so sgemm == loops and many
     * candidates tie exactly; ties must come out by ascending row id */
    us_pk_mode modes[2] = { US_PK_SUM, US_PK_TUCKER };
    for (int mi = 0; mi < 2; mi++) {
        problem p;
        int r = mi ? 2 : 1;
        problem_make(&p, shape(modes[mi], 4, 2, 3, 12, 10, r, 1, 6, 20), 0);
        size_t nq = 4 * 2 * 2 * 3, nkr = 2 * r * 12 * 3, nkc = 2 * r * 10 * 3;
        for (size_t i = 0; i < nq; i++) p.q[i] = (float)(rng_next() % 3);
        for (size_t i = 0; i < nkr; i++) p.k_row[i] = (float)(rng_next() % 2);
        for (size_t i = 0; i < nkc; i++) p.k_col[i] = (float)(rng_next() % 2);
        for (int i = 0; i < 2 * r * r; i++) p.core[i] = (float)(1 + i % 2);
        run_fast(&p, 2);
        run_ref(&p);
        size_t n = 4 * 2 * 20;
        assert_memory_equal(p.idx, p.idx_ref, n * 8);
        assert_memory_equal(p.sc, p.sc_ref, n * 4);
        size_t ties = 0;
        for (size_t j = 0; j < n; j++)
            if (j % 20 && p.sc[j] == p.sc[j - 1]) {
                ties++;
                assert_true(p.idx[j] > p.idx[j - 1]);
            }
        assert_true(ties > n / 4);          /* the test really exercises ties */
        problem_free(&p);
    }
}

/* PKM's final top-k from the pairs above the dominance bound equals the
 * grid path's bit for bit, on the same sgemm scores: every ISA level of the
 * top-k, random scores (the pairs decide), and small integers (ties: the
 * pairs hand over to the grid). The fast-vs-reference tests above allow the
 * k-th id to differ where sgemm rounds differently, so they cannot see a
 * pair lost at the bound; this can. */
static void test_pkm_pairs_equal_grid(void **state)
{
    (void)state;
    us_pk_shape shapes[] = {
        shape(US_PK_SUM, 16, 2, 16, 512, 512, 1, 1, 32, 32),
        shape(US_PK_SUM, 16, 2, 16, 512, 384, 1, 1, 32, 16),
        shape(US_PK_SUM, 16, 2, 16, 256, 300, 1, 1, 16, 64),
        shape(US_PK_SUM, 8, 2, 3, 64, 64, 1, 1, 16, 16),
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        problem p;
        problem_make(&p, shapes[i], 0);
        if (shapes[i].d_key == 3) {          /* small integers: exact ties */
            size_t nq = (size_t)p.s.n_tokens * p.s.n_heads * 2 * 3;
            size_t nk = (size_t)p.s.n_heads * 64 * 3;
            for (size_t j = 0; j < nq; j++) p.q[j] = (float)(rng_next() % 3);
            for (size_t j = 0; j < nk; j++) p.k_row[j] = (float)(rng_next() % 3);
            for (size_t j = 0; j < nk; j++) p.k_col[j] = (float)(rng_next() % 3);
        }
        size_t n = (size_t)p.s.n_tokens * p.s.n_heads * p.s.k;
        for (int isa = 0; isa <= 2; isa++) {
            us_topk_limit_isa(isa);
            us_pk_allow_pairs(0);
            run_fast(&p, 1);
            memcpy(p.idx_ref, p.idx, n * 8);
            memcpy(p.sc_ref, p.sc, n * 4);
            us_pk_allow_pairs(1);
            run_fast(&p, 1);
            assert_memory_equal(p.idx, p.idx_ref, n * 8);
            assert_memory_equal(p.sc, p.sc_ref, n * 4);
        }
        us_topk_limit_isa(2);
        problem_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkm_exact_and_vs_ref),
        cmocka_unit_test(test_tucker_vs_ref_and_exact_scores),
        cmocka_unit_test(test_tucker_rank1_core_is_exact),
        cmocka_unit_test(test_threads_and_softmax),
        cmocka_unit_test(test_rank1_factors),
        cmocka_unit_test(test_nan_inputs_and_errors),
        cmocka_unit_test(test_ties_go_to_lower_row_id),
        cmocka_unit_test(test_pkm_pairs_equal_grid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
