/*
 * test_gather.c — weighted gather-sum: fast path vs scalar reference (bit
 * exact, by contract), both vs an independent double-precision sum, over
 * every dtype, scattered blocks with an exactly-sized last partial block (so
 * ASan catches any read past a row), odd dims, zero/duplicate weights,
 * NaN/Inf, and every error path (out must stay untouched).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/gather.h"
#include "kernels/hash.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void)
{
    return us_splitmix64_next(&rng_state);
}
static float rng_unit(void) { return (float)((rng_next() >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }
static uint64_t rng_below(uint64_t n) { return rng_next() % n; }

/* A table of `rows` rows held in separately allocated blocks (scattered in
 * memory), the last one sized for exactly the rows it holds. */
typedef struct tview {
    us_rows_view v;
    uint8_t **blocks;
    float **scales;
} tview;

static void tview_make(tview *tv, us_dtype dtype, uint32_t dim, uint64_t rows,
                       uint32_t block_bits, size_t stride_pad)
{
    memset(tv, 0, sizeof *tv);
    size_t elem = us_dtype_size(dtype);
    uint64_t per = 1ull << block_bits;
    uint64_t n_blocks = (rows + per - 1) / per;
    tv->v.dtype = dtype;
    tv->v.dim = dim;
    tv->v.block_bits = block_bits;
    tv->v.row_stride_bytes = dim * elem + stride_pad;
    tv->v.rows = rows;
    tv->v.n_blocks = n_blocks;
    tv->blocks = calloc(n_blocks, sizeof *tv->blocks);
    tv->scales = calloc(n_blocks, sizeof *tv->scales);
    assert_non_null(tv->blocks);
    assert_non_null(tv->scales);
    for (uint64_t b = 0; b < n_blocks; b++) {
        uint64_t in_block = (b + 1 == n_blocks) ? rows - b * per : per;
        /* last row of a block: no stride padding after it, so the buffer ends
         * exactly where the row does */
        size_t bytes = (in_block - 1) * tv->v.row_stride_bytes + dim * elem;
        tv->blocks[b] = malloc(bytes);
        assert_non_null(tv->blocks[b]);
        memset(tv->blocks[b], 0xA5, bytes);     /* padding holds garbage */
        tv->scales[b] = malloc(in_block * sizeof(float));
        assert_non_null(tv->scales[b]);
        for (uint64_t r = 0; r < in_block; r++) {
            uint8_t *row = tv->blocks[b] + r * tv->v.row_stride_bytes;
            tv->scales[b][r] = 0.01f + 0.1f * (rng_unit() + 1.0f);
            for (uint32_t c = 0; c < dim; c++) {
                float x = rng_unit();
                switch (dtype) {
                case US_DTYPE_F32:  memcpy(row + 4 * c, &x, 4); break;
                case US_DTYPE_BF16: { uint16_t h = us_f32_to_bf16(x); memcpy(row + 2 * c, &h, 2); break; }
                case US_DTYPE_F16:  { uint16_t h = us_f32_to_f16(x); memcpy(row + 2 * c, &h, 2); break; }
                case US_DTYPE_INT8: row[c] = (uint8_t)(int8_t)(int)(x * 127.0f); break;
                }
            }
        }
    }
    tv->v.blocks = (const uint8_t *const *)tv->blocks;
    tv->v.block_scales = dtype == US_DTYPE_INT8 ? (const float *const *)tv->scales : NULL;
}

static void tview_free(tview *tv)
{
    for (uint64_t b = 0; b < tv->v.n_blocks; b++) {
        free(tv->blocks[b]);
        free(tv->scales[b]);
    }
    free(tv->blocks);
    free(tv->scales);
}

/* Element c of row r as f32, read independently of the kernels. */
static double elem(const tview *tv, uint64_t r, uint32_t c)
{
    const uint8_t *row = tv->blocks[r >> tv->v.block_bits] +
                         (r & ((1ull << tv->v.block_bits) - 1)) * tv->v.row_stride_bytes;
    uint16_t h;
    float f;
    switch (tv->v.dtype) {
    case US_DTYPE_F32:  memcpy(&f, row + 4 * c, 4); return f;
    case US_DTYPE_BF16: memcpy(&h, row + 2 * c, 2); return us_bf16_to_f32(h);
    case US_DTYPE_F16:  memcpy(&h, row + 2 * c, 2); return us_f16_to_f32(h);
    case US_DTYPE_INT8:
        return (double)(int8_t)row[c] *
               tv->scales[r >> tv->v.block_bits][r & ((1ull << tv->v.block_bits) - 1)];
    }
    return NAN;
}

static void set_elem_f32(tview *tv, uint64_t r, uint32_t c, float x)
{
    assert_int_equal(tv->v.dtype, US_DTYPE_F32);
    uint8_t *row = tv->blocks[r >> tv->v.block_bits] +
                   (r & ((1ull << tv->v.block_bits) - 1)) * tv->v.row_stride_bytes;
    memcpy(row + 4 * c, &x, 4);
}

/* out vs a double sum at tolerance 1e-5 relative to sum |w x|. */
static void check_against_double(const tview *tv, const float *out, const uint64_t *rows,
                                 const float *w, const uint8_t *group, size_t n_tokens,
                                 size_t k, int n_groups)
{
    uint32_t dim = tv->v.dim;
    for (size_t t = 0; t < n_tokens; t++)
        for (int g = 0; g < n_groups; g++)
            for (uint32_t c = 0; c < dim; c++) {
                double s = 0, mag = 0;
                for (size_t i = 0; i < k; i++) {
                    size_t p = t * k + i;
                    if ((group ? group[p] : 0) != g || w[p] == 0.0f)
                        continue;
                    double x = elem(tv, rows[p], c);
                    s += w[p] * x;
                    mag += fabs(w[p] * x);
                }
                double got = out[(t * n_groups + g) * dim + c];
                if (fabs(got - s) > 1e-5 * mag + 1e-30)
                    fail_msg("token %zu group %d col %u: got %.9g want %.9g", t, g, c, got, s);
            }
}

static const us_dtype all_dtypes[] = { US_DTYPE_F32, US_DTYPE_BF16, US_DTYPE_F16, US_DTYPE_INT8 };

/* Random pairs: rows in [0, n_rows), weights in [-1, 1], some exactly 0. */
static void random_pairs(uint64_t *rows, float *w, uint8_t *group, size_t n, uint64_t n_rows,
                         int n_groups)
{
    for (size_t p = 0; p < n; p++) {
        rows[p] = rng_below(n_rows);
        w[p] = rng_below(8) == 0 ? 0.0f : rng_unit();
        if (group)
            group[p] = (uint8_t)rng_below((uint64_t)n_groups);
    }
}

static void test_fast_matches_ref_all_dtypes(void **state)
{
    (void)state;
    static const uint32_t dims[] = { 1, 3, 7, 8, 9, 31, 33, 64, 100, 257, 600, 2100 };
    static const size_t ks[] = { 1, 5, 16 };
    static const size_t tokens[] = { 1, 7, 33 };
    for (size_t di = 0; di < 4; di++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            tview tv;
            uint64_t n_rows = 50 + rng_below(100);          /* last block partial */
            tview_make(&tv, all_dtypes[di], dims[d], n_rows, 4, d % 3 == 0 ? 12 : 0);
            for (size_t ki = 0; ki < 3; ki++)
                for (size_t ti = 0; ti < 3; ti++) {
                    size_t k = ks[ki], T = tokens[ti], n = T * k;
                    uint64_t rows[33 * 16];
                    float w[33 * 16];
                    random_pairs(rows, w, NULL, n, n_rows, 1);
                    size_t out_n = T * dims[d];
                    float *ref = malloc(out_n * 4), *fast = malloc(out_n * 4);
                    assert_non_null(ref);
                    assert_non_null(fast);
                    assert_int_equal(us_gather_sum_ref(ref, &tv.v, rows, w, T, k, NULL), US_OK);
                    check_against_double(&tv, ref, rows, w, NULL, T, k, 1);
                    for (int nt = 1; nt <= 2; nt++) {
                        memset(fast, 0xff, out_n * 4);
                        assert_int_equal(us_gather_sum(fast, &tv.v, rows, w, T, k, nt, NULL), US_OK);
                        assert_memory_equal(fast, ref, out_n * 4);
                    }
                    /* every path and prefetch choice: portable, AVX2, AVX-512 (where
                     * the CPU has it; else the widest it has), prefetch off / on /
                     * by row size (dims 600 and 2100 make rows above the limit) */
                    static const us_gather_opts paths[] = {
                        { .prefetch = 0, .force_portable = 1 },
                        { .prefetch = 0, .force_avx2 = 1 },
                        { .prefetch = 1, .force_avx2 = 1 },
                        { .prefetch = US_GATHER_PREFETCH_AUTO, .force_avx2 = 1 },
                        { .prefetch = 0 },
                        { .prefetch = 1 },
                        { .prefetch = US_GATHER_PREFETCH_AUTO },
                    };
                    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++)
                        for (int nt = 1; nt <= 2; nt++) {
                            memset(fast, 0xff, out_n * 4);
                            assert_int_equal(us_gather_sum_opts(fast, &tv.v, rows, w, NULL, T, k,
                                                                1, nt, &paths[pi], NULL), US_OK);
                            assert_memory_equal(fast, ref, out_n * 4);
                        }
                    free(ref);
                    free(fast);
                }
            tview_free(&tv);
        }
}

static void test_k_equals_all_rows_and_duplicates(void **state)
{
    (void)state;
    for (size_t di = 0; di < 4; di++) {
        tview tv;
        uint64_t n_rows = 37;
        tview_make(&tv, all_dtypes[di], 45, n_rows, 3, 0);
        /* k = n: each token reads every row once, in a shuffled order */
        size_t T = 3, k = n_rows;
        uint64_t rows[3 * 37];
        float w[3 * 37];
        for (size_t t = 0; t < T; t++) {
            for (size_t i = 0; i < k; i++)
                rows[t * k + i] = i;
            for (size_t i = k - 1; i > 0; i--) {
                size_t j = rng_below(i + 1);
                uint64_t tmp = rows[t * k + i]; rows[t * k + i] = rows[t * k + j]; rows[t * k + j] = tmp;
            }
            for (size_t i = 0; i < k; i++)
                w[t * k + i] = rng_unit();
        }
        float ref[3 * 45], fast[3 * 45];
        assert_int_equal(us_gather_sum_ref(ref, &tv.v, rows, w, T, k, NULL), US_OK);
        assert_int_equal(us_gather_sum(fast, &tv.v, rows, w, T, k, 2, NULL), US_OK);
        assert_memory_equal(fast, ref, sizeof ref);
        check_against_double(&tv, fast, rows, w, NULL, T, k, 1);
        /* duplicates: the same row 5 times equals it once with the weights summed */
        uint64_t dup[5] = { 7, 7, 7, 7, 7 };
        float dw[5] = { 0.5f, 0.25f, 0.125f, 0.0625f, 0.0625f };    /* exact sum 1 */
        float one = 1.0f;
        float a[45], b[45];
        assert_int_equal(us_gather_sum(a, &tv.v, dup, dw, 1, 5, 1, NULL), US_OK);
        assert_int_equal(us_gather_sum(b, &tv.v, dup, &one, 1, 1, 1, NULL), US_OK);
        for (int c = 0; c < 45; c++) {
            assert_true(b[c] == (float)elem(&tv, 7, (uint32_t)c));
            assert_float_equal(a[c], b[c], 1e-6f * fabsf(b[c]));
        }
        check_against_double(&tv, a, dup, dw, NULL, 1, 5, 1);
        /* two halves of a stored element sum exactly to it (no int8 scale product) */
        float halves[2] = { 0.5f, 0.5f };
        assert_int_equal(us_gather_sum(a, &tv.v, dup, halves, 1, 2, 1, NULL), US_OK);
        if (all_dtypes[di] != US_DTYPE_INT8)
            assert_memory_equal(a, b, sizeof a);
        tview_free(&tv);
    }
}

static void test_zero_weights_nan_inf(void **state)
{
    (void)state;
    tview tv;
    tview_make(&tv, US_DTYPE_F32, 19, 20, 2, 0);
    set_elem_f32(&tv, 3, 0, NAN);
    set_elem_f32(&tv, 4, 1, INFINITY);
    set_elem_f32(&tv, 5, 1, -INFINITY);
    set_elem_f32(&tv, 6, 18, INFINITY);          /* in the scalar tail of 19 */
    float out[19], ref[19];
    /* weight 0 skips the NaN row; the rest is finite */
    uint64_t r1[2] = { 3, 1 };
    float w1[2] = { 0.0f, 1.0f };
    assert_int_equal(us_gather_sum(out, &tv.v, r1, w1, 1, 2, 1, NULL), US_OK);
    for (int c = 0; c < 19; c++)
        assert_true(out[c] == (float)elem(&tv, 1, (uint32_t)c));
    float w1n[2] = { -0.0f, 1.0f };
    assert_int_equal(us_gather_sum(out, &tv.v, r1, w1n, 1, 2, 1, NULL), US_OK);
    assert_false(isnan(out[0]));
    /* a non-zero weight propagates NaN only in its column */
    float w2[2] = { 1e-3f, 1.0f };
    assert_int_equal(us_gather_sum(out, &tv.v, r1, w2, 1, 2, 1, NULL), US_OK);
    assert_true(isnan(out[0]));
    assert_false(isnan(out[1]));
    /* Inf + -Inf = NaN, Inf alone stays Inf, NaN weight poisons the row */
    uint64_t r3[3] = { 4, 5, 6 };
    float w3[3] = { 1.0f, 1.0f, 2.0f };
    assert_int_equal(us_gather_sum(out, &tv.v, r3, w3, 1, 3, 1, NULL), US_OK);
    assert_int_equal(us_gather_sum_ref(ref, &tv.v, r3, w3, 1, 3, NULL), US_OK);
    assert_memory_equal(out, ref, sizeof out);
    assert_true(isnan(out[1]));
    assert_true(isinf(out[18]) && out[18] > 0);
    float w4[1] = { NAN };
    assert_int_equal(us_gather_sum(out, &tv.v, r3, w4, 1, 1, 1, NULL), US_OK);
    for (int c = 0; c < 19; c++)
        assert_true(isnan(out[c]));
    /* k = 0 writes zeros */
    memset(out, 0xff, sizeof out);
    assert_int_equal(us_gather_sum(out, &tv.v, NULL, NULL, 1, 0, 1, NULL), US_OK);
    for (int c = 0; c < 19; c++)
        assert_true(out[c] == 0.0f);
    tview_free(&tv);
}

static void test_grouped(void **state)
{
    (void)state;
    for (size_t di = 0; di < 4; di++) {
        tview tv;
        tview_make(&tv, all_dtypes[di], 21, 70, 4, 4);
        enum { T = 9, K = 12, G = 4 };
        uint64_t rows[T * K];
        float w[T * K];
        uint8_t group[T * K];
        random_pairs(rows, w, group, T * K, 70, G);
        float ref[T * G * 21], fast[T * G * 21];
        assert_int_equal(us_gather_sum_grouped_ref(ref, &tv.v, rows, w, group, T, K, G, NULL),
                         US_OK);
        check_against_double(&tv, ref, rows, w, group, T, K, G);
        for (int nt = 0; nt <= 2; nt++) {
            memset(fast, 0xff, sizeof fast);
            assert_int_equal(us_gather_sum_grouped(fast, &tv.v, rows, w, group, T, K, G, nt, NULL),
                             US_OK);
            assert_memory_equal(fast, ref, sizeof ref);
        }
        /* one group, all pairs in it == the ungrouped sum */
        uint8_t zeros[T * K] = { 0 };
        float g1[T * 21], plain[T * 21];
        assert_int_equal(us_gather_sum_grouped(g1, &tv.v, rows, w, zeros, T, K, 1, 1, NULL), US_OK);
        assert_int_equal(us_gather_sum(plain, &tv.v, rows, w, T, K, 1, NULL), US_OK);
        assert_memory_equal(g1, plain, sizeof plain);
        tview_free(&tv);
    }
}

/* us_gather_sum_prechecked (the serve path's entry after its own row
 * checks): bit-identical to the scalar reference, grouped and not, every
 * dtype and both thread counts; its O(1) checks still reject. */
static void test_prechecked_matches_ref(void **state)
{
    (void)state;
    for (size_t di = 0; di < 4; di++) {
        tview tv;
        tview_make(&tv, all_dtypes[di], 130, 90, 4, 8);
        enum { T = 11, K = 7, G = 3, D = 130 };
        uint64_t rows[T * K];
        float w[T * K];
        uint8_t group[T * K];
        random_pairs(rows, w, group, T * K, 90, G);
        static float ref[T * G * D], fast[T * G * D];
        assert_int_equal(us_gather_sum_ref(ref, &tv.v, rows, w, T, K, NULL), US_OK);
        for (int nt = 1; nt <= 2; nt++) {
            memset(fast, 0xff, sizeof fast);
            assert_int_equal(us_gather_sum_prechecked(fast, &tv.v, rows, w, NULL, T, K, 1, nt,
                                                      NULL), US_OK);
            assert_memory_equal(fast, ref, (size_t)T * D * 4);
        }
        assert_int_equal(us_gather_sum_grouped_ref(ref, &tv.v, rows, w, group, T, K, G, NULL),
                         US_OK);
        for (int nt = 1; nt <= 2; nt++) {
            memset(fast, 0xff, sizeof fast);
            assert_int_equal(us_gather_sum_prechecked(fast, &tv.v, rows, w, group, T, K, G, nt,
                                                      NULL), US_OK);
            assert_memory_equal(fast, ref, sizeof ref);
        }
        memset(fast, 0x5a, sizeof fast);
        memcpy(ref, fast, sizeof ref);
        us_err e = {0};
        assert_int_equal(us_gather_sum_prechecked(fast, &tv.v, rows, w, NULL, T, K, 0, 1, &e),
                         US_EINVAL);
        assert_non_null(strstr(e.msg, "n_groups"));
        assert_int_equal(us_gather_sum_prechecked(fast, &tv.v, rows, w, NULL, T, K, G, 1, &e),
                         US_EINVAL);
        assert_int_equal(us_gather_sum_prechecked(fast, &tv.v, NULL, w, NULL, T, K, 1, 1, &e),
                         US_EINVAL);
        assert_int_equal(us_gather_sum_prechecked(fast, NULL, rows, w, NULL, T, K, 1, 1, &e),
                         US_EINVAL);
        assert_memory_equal(fast, ref, sizeof ref);
        tview_free(&tv);
    }
}

static void test_errors_leave_out_untouched(void **state)
{
    (void)state;
    tview tv;
    tview_make(&tv, US_DTYPE_INT8, 16, 40, 3, 0);
    float out[2 * 16], sentinel[2 * 16];
    memset(sentinel, 0x5a, sizeof sentinel);
    memcpy(out, sentinel, sizeof out);
    us_err err = { 0 };
    uint64_t rows[4] = { 1, 2, 3, 40 };          /* 40 is one past the end */
    float w[4] = { 1, 1, 1, 1 };
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w, 2, 2, 1, &err), US_ERANGE);
    assert_non_null(strstr(err.msg, "row 40"));
    assert_non_null(strstr(err.msg, "token 1"));
    assert_memory_equal(out, sentinel, sizeof out);
    assert_int_equal(us_gather_sum_ref(out, &tv.v, rows, w, 2, 2, NULL), US_ERANGE);
    /* zero weight does not excuse a bad id */
    float w0[4] = { 1, 1, 1, 0 };
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w0, 2, 2, 1, NULL), US_ERANGE);
    rows[3] = UINT64_MAX;
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w, 2, 2, 2, NULL), US_ERANGE);
    /* a block that is not on this rank */
    rows[3] = 17;                                 /* block 2 */
    uint8_t *saved = tv.blocks[2];
    tv.blocks[2] = NULL;
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w, 2, 2, 1, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "block 2"));
    assert_non_null(strstr(err.msg, "row 17"));
    assert_memory_equal(out, sentinel, sizeof out);
    uint8_t copy[4 * 16];
    assert_int_equal(us_gather_copy(copy, NULL, &tv.v, rows, 4, 1, NULL), US_ENOTFOUND);
    tv.blocks[2] = saved;
    /* missing scales of an int8 block */
    float *saved_scales = tv.scales[2];
    tv.scales[2] = NULL;
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w, 2, 2, 1, &err), US_ENOTFOUND);
    assert_non_null(strstr(err.msg, "scales"));
    tv.scales[2] = saved_scales;
    tv.v.block_scales = NULL;
    assert_int_equal(us_gather_sum(out, &tv.v, rows, w, 2, 2, 1, &err), US_EINVAL);
    tv.v.block_scales = (const float *const *)tv.scales;
    /* group out of range */
    uint8_t group[4] = { 0, 1, 2, 3 };
    float gout[2 * 3 * 16];
    memset(gout, 0x5a, sizeof gout);
    assert_int_equal(us_gather_sum_grouped(gout, &tv.v, rows, w, group, 2, 2, 3, 1, &err),
                     US_EINVAL);
    assert_non_null(strstr(err.msg, "group 3"));
    for (size_t i = 0; i < sizeof gout / 4; i++)
        assert_memory_equal(&gout[i], &sentinel[0], 4);
    assert_int_equal(us_gather_sum_grouped_ref(gout, &tv.v, rows, w, group, 2, 2, 3, NULL),
                     US_EINVAL);
    assert_int_equal(us_gather_sum_grouped(gout, &tv.v, rows, w, NULL, 2, 2, 3, 1, NULL),
                     US_EINVAL);
    assert_int_equal(us_gather_sum_grouped(gout, &tv.v, rows, w, group, 2, 2, 0, 1, NULL),
                     US_EINVAL);
    /* bad views and arguments */
    us_rows_view bad = tv.v;
    bad.row_stride_bytes = 15;
    assert_int_equal(us_gather_sum(out, &bad, rows, w, 2, 2, 1, &err), US_EINVAL);
    bad = tv.v;
    bad.dim = 0;
    assert_int_equal(us_gather_sum(out, &bad, rows, w, 2, 2, 1, NULL), US_EINVAL);
    bad = tv.v;
    bad.dtype = (us_dtype)7;
    assert_int_equal(us_gather_sum(out, &bad, rows, w, 2, 2, 1, NULL), US_EINVAL);
    bad = tv.v;
    bad.n_blocks = 4;                             /* 40 rows need 5 blocks of 8 */
    assert_int_equal(us_gather_sum(out, &bad, rows, w, 2, 2, 1, NULL), US_EINVAL);
    assert_int_equal(us_gather_sum(out, NULL, rows, w, 2, 2, 1, NULL), US_EINVAL);
    assert_int_equal(us_gather_sum(NULL, &tv.v, rows, w, 2, 2, 1, NULL), US_EINVAL);
    assert_int_equal(us_gather_sum(out, &tv.v, NULL, w, 2, 2, 1, NULL), US_EINVAL);
    assert_int_equal(us_gather_sum(out, &tv.v, rows, NULL, 2, 2, 1, NULL), US_EINVAL);
    assert_memory_equal(out, sentinel, sizeof out);
    tview_free(&tv);
}

static void test_gather_copy(void **state)
{
    (void)state;
    for (size_t di = 0; di < 4; di++) {
        tview tv;
        tview_make(&tv, all_dtypes[di], 13, 30, 2, 8);
        size_t row_bytes = 13 * us_dtype_size(all_dtypes[di]);
        uint64_t rows[200];
        for (size_t i = 0; i < 200; i++)
            rows[i] = rng_below(30);
        uint8_t out[200 * 13 * 4];
        float scales[200];
        assert_int_equal(us_gather_copy(out, scales, &tv.v, rows, 200, 2, NULL), US_OK);
        for (size_t i = 0; i < 200; i++) {
            const uint8_t *src = tv.blocks[rows[i] >> 2] + (rows[i] & 3) * tv.v.row_stride_bytes;
            assert_memory_equal(out + i * row_bytes, src, row_bytes);
            if (all_dtypes[di] == US_DTYPE_INT8)
                assert_true(scales[i] == tv.scales[rows[i] >> 2][rows[i] & 3]);
        }
        rows[199] = 30;
        us_err err = { 0 };
        assert_int_equal(us_gather_copy(out, NULL, &tv.v, rows, 200, 1, &err), US_ERANGE);
        assert_non_null(strstr(err.msg, "row 30"));
        tview_free(&tv);
    }
}

/* k larger than the AVX2 path's chunk of 64 pairs, a chunk that is all zero
 * weights, dims around the 64-column register tile, many groups. */
static void test_long_pair_lists(void **state)
{
    (void)state;
    static const uint32_t dims[] = { 64, 65, 129, 200 };
    enum { T = 5, K = 150, G = 7 };
    static uint64_t rows[T * K];
    static float w[T * K];
    static uint8_t group[T * K];
    for (size_t di = 0; di < 4; di++)
        for (size_t d = 0; d < 4; d++) {
            tview tv;
            tview_make(&tv, all_dtypes[di], dims[d], 300, 5, 0);
            random_pairs(rows, w, group, T * K, 300, G);
            for (size_t i = 64; i < 128; i++)
                w[2 * K + i] = 0.0f;              /* token 2: its second chunk is empty */
            size_t n1 = T * dims[d], ng = T * G * dims[d];
            float *ref = malloc(ng * 4), *fast = malloc(ng * 4);
            assert_true(ref && fast);
            assert_int_equal(us_gather_sum_ref(ref, &tv.v, rows, w, T, K, NULL), US_OK);
            assert_int_equal(us_gather_sum(fast, &tv.v, rows, w, T, K, 2, NULL), US_OK);
            assert_memory_equal(fast, ref, n1 * 4);
            check_against_double(&tv, fast, rows, w, NULL, T, K, 1);
            assert_int_equal(us_gather_sum_grouped_ref(ref, &tv.v, rows, w, group, T, K, G, NULL),
                             US_OK);
            assert_int_equal(us_gather_sum_grouped(fast, &tv.v, rows, w, group, T, K, G, 1, NULL),
                             US_OK);
            assert_memory_equal(fast, ref, ng * 4);
            check_against_double(&tv, fast, rows, w, group, T, K, G);
            /* one token on two threads: the columns are split instead */
            memset(fast, 0xff, ng * 4);
            assert_int_equal(us_gather_sum_grouped(fast, &tv.v, rows, w, group, 1, K, G, 2, NULL),
                             US_OK);
            assert_memory_equal(fast, ref, (size_t)G * dims[d] * 4);
            assert_int_equal(us_gather_sum_ref(ref, &tv.v, rows + 2 * K, w + 2 * K, 1, K, NULL),
                             US_OK);
            memset(fast, 0xff, ng * 4);
            assert_int_equal(us_gather_sum(fast, &tv.v, rows + 2 * K, w + 2 * K, 1, K, 0, NULL),
                             US_OK);
            assert_memory_equal(fast, ref, (size_t)dims[d] * 4);
            free(ref);
            free(fast);
            tview_free(&tv);
        }
}

/* Random, often invalid, views and ids: every call returns OK or a clean
 * error code, never touches memory it must not (ASan in `make asan`), and
 * on error leaves out unchanged. */
static void test_random_bad_inputs(void **state)
{
    (void)state;
    tview tv;
    tview_make(&tv, US_DTYPE_BF16, 24, 50, 3, 4);
    float out[4 * 2 * 64], sentinel[4 * 2 * 64];
    for (int trial = 0; trial < 2000; trial++) {
        us_rows_view v = tv.v;
        switch (rng_below(8)) {
        case 0: v.dtype = (us_dtype)rng_below(6); break;          /* maybe unknown */
        case 1: v.dim = (uint32_t)rng_below(40); break;           /* maybe 0 or > stride */
        case 2: v.rows = rng_below(80); break;                    /* maybe > blocks hold */
        case 3: v.n_blocks = rng_below(9); break;
        case 4: v.row_stride_bytes = rng_below(80); break;
        case 5: v.block_bits = (uint32_t)rng_below(70); break;
        default: break;
        }
        if (v.dtype == US_DTYPE_INT8)
            v.block_scales = rng_below(2) ? (const float *const *)tv.scales : NULL;
        uint64_t rows[4 * 3];
        float w[4 * 3];
        uint8_t group[4 * 3];
        for (int p = 0; p < 12; p++) {
            rows[p] = rng_below(4) ? rng_below(60) : rng_next();
            w[p] = rng_unit();
            group[p] = (uint8_t)rng_below(3);
        }
        /* only views whose blocks really hold the claimed rows may pass */
        int sound = v.block_bits == 3 && v.n_blocks <= tv.v.n_blocks && v.rows <= tv.v.rows &&
                    v.row_stride_bytes == tv.v.row_stride_bytes && v.dim <= tv.v.dim &&
                    (v.dtype == US_DTYPE_BF16 || v.dtype == US_DTYPE_F16);
        memset(sentinel, 0x5a, sizeof sentinel);
        memcpy(out, sentinel, sizeof out);
        if (us_rows_view_check(&v, NULL) != US_OK) {
            /* rejected before any row is touched */
            assert_int_equal(us_gather_sum(out, &v, rows, w, 2, 3, 2, NULL), US_EINVAL);
            assert_int_equal(us_gather_sum_ref(out, &v, rows, w, 2, 3, NULL), US_EINVAL);
            assert_memory_equal(out, sentinel, sizeof out);
            continue;
        }
        if (!sound)
            continue;       /* a view that lies about its memory is the caller's bug */
        size_t T = 1 + rng_below(4), k = rng_below(4);
        int G = 1 + (int)rng_below(2);
        int rc = us_gather_sum_grouped(out, &v, rows, w, group, T, k, G, 2, NULL);
        int rc_ref = us_gather_sum_grouped_ref(out, &v, rows, w, group, T, k, G, NULL);
        assert_int_equal(rc, rc_ref);
        assert_true(rc == US_OK || rc == US_EINVAL || rc == US_ERANGE || rc == US_ENOTFOUND);
        if (rc != US_OK)
            assert_memory_equal(out, sentinel, sizeof out);
    }
    tview_free(&tv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_matches_ref_all_dtypes),
        cmocka_unit_test(test_k_equals_all_rows_and_duplicates),
        cmocka_unit_test(test_zero_weights_nan_inf),
        cmocka_unit_test(test_grouped),
        cmocka_unit_test(test_prechecked_matches_ref),
        cmocka_unit_test(test_long_pair_lists),
        cmocka_unit_test(test_errors_leave_out_untouched),
        cmocka_unit_test(test_gather_copy),
        cmocka_unit_test(test_random_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
