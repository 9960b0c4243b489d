/*
 * test_kernels_dump.c — inputs and outputs of the kernels as .npy files, for
 * the independent numpy reference (tests/ref/kernels_ref.py, run by
 * tests/integration/kernels_numpy.sh).
 *
 *   test_kernels_dump --dump DIR   writes DIR/<case>_<array>.npy
 *   test_kernels_dump              cmocka self-test of the .npy writer
 *
 * Cases: gather_{f32,bf16,f16,int8} (plain and grouped sums over scattered
 * blocks), topk (rows with ties, NaN, Inf), score_{pkm,tdqkr,mcs,mcs_raw}
 * (MCS with softmax; rank 3 with 3 cores, raw scores), quant.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include "kernels/gather.h"
#include "kernels/hash.h"
#include "kernels/quant.h"
#include "kernels/score.h"
#include "kernels/topk.h"

static uint64_t rng_state = 2024;
static uint64_t rng_next(void)
{
    return us_splitmix64_next(&rng_state);
}
static float rng_unit(void) { return (float)((rng_next() >> 40) * 0x1.0p-24) * 2.0f - 1.0f; }

/* Writes a C-order .npy (format 1.0). descr e.g. "<f4"; shape of ndim dims. */
static int write_npy(const char *dir, const char *name, const char *descr, const void *data,
                     size_t elem_bytes, int ndim, const size_t *shape)
{
    char path[1024], header[256], dims[160] = "";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        char one[32];
        snprintf(one, sizeof one, "%zu%s", shape[i], ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        strncat(dims, one, sizeof dims - strlen(dims) - 1);
        count *= shape[i];
    }
    int hl = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, "
                      "'shape': (%s), }", descr, dims);
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    uint16_t header_len = (uint16_t)(hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&header_len, 2, 1, f);
    fwrite(header, 1, (size_t)hl, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t wrote = fwrite(data, elem_bytes, count, f);
    int rc = (wrote == count && fclose(f) == 0) ? 0 : -1;
    return rc;
}

#define NPY(dir, name, descr, data, eb, ...) \
    do { size_t shp_[] = { __VA_ARGS__ }; \
         if (write_npy(dir, name, descr, data, eb, (int)(sizeof shp_ / sizeof shp_[0]), shp_)) \
             return fprintf(stderr, "cannot write %s/%s.npy\n", dir, name), 1; } while (0)

static int dump_gather(const char *dir, us_dtype dtype)
{
    enum { ROWS = 90, DIM = 37, BB = 4, T = 11, K = 9, G = 3 };
    size_t elem = us_dtype_size(dtype);
    uint8_t table[ROWS * DIM * 4];
    float scales[ROWS];
    for (size_t r = 0; r < ROWS; r++) {
        scales[r] = 0.001f + 0.01f * (rng_unit() + 1.0f);
        for (size_t c = 0; c < DIM; c++) {
            float x = rng_unit() * 3.0f;
            uint8_t *at = table + (r * DIM + c) * elem;
            uint16_t h;
            switch (dtype) {
            case US_DTYPE_F32:  memcpy(at, &x, 4); break;
            case US_DTYPE_BF16: h = us_f32_to_bf16(x); memcpy(at, &h, 2); break;
            case US_DTYPE_F16:  h = us_f32_to_f16(x); memcpy(at, &h, 2); break;
            case US_DTYPE_INT8: *at = (uint8_t)(int8_t)(int)(x * 40.0f); break;
            }
        }
    }
    /* blocks copied to separate allocations: scattered, last one partial */
    const uint8_t *blocks[(ROWS >> BB) + 1];
    const float *bscales[(ROWS >> BB) + 1];
    uint8_t *copies[(ROWS >> BB) + 1];
    size_t n_blocks = (ROWS + (1 << BB) - 1) >> BB;
    for (size_t b = 0; b < n_blocks; b++) {
        size_t first = b << BB, n = ROWS - first < (1u << BB) ? ROWS - first : (1u << BB);
        copies[b] = malloc(n * DIM * elem);
        if (copies[b] == NULL)
            return 1;
        memcpy(copies[b], table + first * DIM * elem, n * DIM * elem);
        blocks[b] = copies[b];
        bscales[b] = scales + first;
    }
    us_rows_view v = { .dtype = dtype, .dim = DIM, .block_bits = BB,
                       .row_stride_bytes = DIM * elem, .rows = ROWS, .n_blocks = n_blocks,
                       .blocks = blocks,
                       .block_scales = dtype == US_DTYPE_INT8 ? bscales : NULL };
    uint64_t rows[T * K];
    float w[T * K];
    uint8_t group[T * K];
    for (size_t p = 0; p < T * K; p++) {
        rows[p] = rng_next() % ROWS;
        w[p] = (p % 7 == 3) ? 0.0f : rng_unit();
        group[p] = (uint8_t)(rng_next() % G);
    }
    rows[5] = rows[4];                             /* a duplicate */
    float out[T * DIM], out_g[T * G * DIM];
    us_err err = { 0 };
    if (us_gather_sum(out, &v, rows, w, T, K, 2, &err) != US_OK ||
        us_gather_sum_grouped(out_g, &v, rows, w, group, T, K, G, 2, &err) != US_OK)
        return fprintf(stderr, "gather: %s\n", err.msg), 1;
    for (size_t b = 0; b < n_blocks; b++)
        free(copies[b]);
    char name[64];
    const char *dn = us_dtype_name(dtype);
    const char *descr = dtype == US_DTYPE_F32 ? "<f4" : dtype == US_DTYPE_INT8 ? "|i1" : "<u2";
    snprintf(name, sizeof name, "gather_%s_table", dn);  NPY(dir, name, descr, table, elem, ROWS, DIM);
    snprintf(name, sizeof name, "gather_%s_scales", dn); NPY(dir, name, "<f4", scales, 4, ROWS);
    snprintf(name, sizeof name, "gather_%s_rows", dn);   NPY(dir, name, "<u8", rows, 8, T, K);
    snprintf(name, sizeof name, "gather_%s_weights", dn); NPY(dir, name, "<f4", w, 4, T, K);
    snprintf(name, sizeof name, "gather_%s_group", dn);  NPY(dir, name, "|u1", group, 1, T, K);
    snprintf(name, sizeof name, "gather_%s_out", dn);    NPY(dir, name, "<f4", out, 4, T, DIM);
    snprintf(name, sizeof name, "gather_%s_out_grouped", dn);
    NPY(dir, name, "<f4", out_g, 4, T, G, DIM);
    return 0;
}

static int dump_topk(const char *dir)
{
    enum { R = 6, N = 700, K = 40 };
    static float s[R * N];
    for (size_t i = 0; i < R * N; i++) {
        uint64_t r = rng_next();
        if (i / N == 1)
            s[i] = (float)(r % 7);                 /* heavy ties */
        else if (i / N == 2 && r % 9 == 0)
            s[i] = NAN;
        else if (i / N == 3 && r % 11 == 0)
            s[i] = (r & 64) ? INFINITY : -INFINITY;
        else
            s[i] = rng_unit();
    }
    for (size_t i = 0; i < N; i++)                 /* a row of mostly NaN */
        s[5 * N + i] = i % 50 == 0 ? rng_unit() : NAN;
    uint32_t idx[R * K];
    float val[R * K];
    if (us_topk_rows(idx, val, s, R, N, N, K, 2, NULL) != US_OK)
        return 1;
    NPY(dir, "topk_scores", "<f4", s, 4, R, N);
    NPY(dir, "topk_idx", "<u4", idx, 4, R, K);
    NPY(dir, "topk_val", "<f4", val, 4, R, K);
    return 0;
}

static int dump_score(const char *dir, const char *name, us_pk_shape s)
{
    size_t T = s.n_tokens, H = s.n_heads, d = s.d_key, r = s.rank, m = s.n_cores;
    size_t nq = T * H * 2 * d, nkr = H * r * s.n_rows * d, nkc = H * r * s.n_cols * d;
    size_t nc = H * m * r * r, no = T * H * s.k;
    float *q = malloc(nq * 4), *kr = malloc(nkr * 4), *kc = malloc(nkc * 4);
    float *core = malloc(nc * 4), *sc = malloc(m * no * 4);
    uint64_t *idx = malloc(no * 8);
    size_t ws_bytes = us_pk_workspace_bytes(&s, 2);
    void *ws = malloc(ws_bytes);
    if (!q || !kr || !kc || !core || !sc || !idx || !ws)
        return 1;
    for (size_t i = 0; i < nq; i++) q[i] = rng_unit();
    for (size_t i = 0; i < nkr; i++) kr[i] = rng_unit();
    for (size_t i = 0; i < nkc; i++) kc[i] = rng_unit();
    for (size_t i = 0; i < nc; i++) core[i] = rng_unit() + (i % (r + 1) == 0 ? 1.0f : 0.0f);
    us_err err = { 0 };
    if (us_pk_score(idx, sc, q, kr, kc, s.mode == US_PK_TUCKER ? core : NULL, &s, ws,
                    ws_bytes, 2, &err) != US_OK)
        return fprintf(stderr, "score: %s\n", err.msg), 1;
    char n[64];
    int32_t meta[11] = { s.n_tokens, s.n_heads, s.d_key, s.n_rows, s.n_cols, s.rank,
                         s.n_cores, s.k_pre, s.k, (int)s.mode, (int)s.activation };
    snprintf(n, sizeof n, "%s_meta", name);   NPY(dir, n, "<i4", meta, 4, 11);
    snprintf(n, sizeof n, "%s_q", name);      NPY(dir, n, "<f4", q, 4, T, H, 2, d);
    snprintf(n, sizeof n, "%s_k_row", name);  NPY(dir, n, "<f4", kr, 4, H, r, (size_t)s.n_rows, d);
    snprintf(n, sizeof n, "%s_k_col", name);  NPY(dir, n, "<f4", kc, 4, H, r, (size_t)s.n_cols, d);
    snprintf(n, sizeof n, "%s_core", name);   NPY(dir, n, "<f4", core, 4, H, m, r, r);
    snprintf(n, sizeof n, "%s_idx", name);    NPY(dir, n, "<u8", idx, 8, T, H, (size_t)s.k);
    snprintf(n, sizeof n, "%s_scores", name); NPY(dir, n, "<f4", sc, 4, m, T, H, (size_t)s.k);
    free(q); free(kr); free(kc); free(core); free(sc); free(idx); free(ws);
    return 0;
}

static int dump_quant(const char *dir)
{
    enum { R = 7, D = 45 };
    float x[R * D], scales[R];
    int8_t q[R * D];
    for (size_t i = 0; i < R * D; i++)
        x[i] = rng_unit() * (float)(1 + (i / D) * 7);
    for (size_t c = 0; c < D; c++)
        x[4 * D + c] = 0.0f;                                /* zero row */
    for (size_t c = 0; c < D; c++)                          /* exact .5 ties */
        x[5 * D + c] = (float)((int)c - 22) * 0.5f + (c == 0 ? -50.0f : 0.0f);
    if (us_quant_int8_rows(q, scales, x, R, D, NULL) != US_OK)
        return 1;
    NPY(dir, "quant_x", "<f4", x, 4, R, D);
    NPY(dir, "quant_q", "|i1", q, 1, R, D);
    NPY(dir, "quant_scales", "<f4", scales, 4, R);
    return 0;
}

static int dump_all(const char *dir)
{
    static const us_dtype dtypes[] = { US_DTYPE_F32, US_DTYPE_BF16, US_DTYPE_F16, US_DTYPE_INT8 };
    for (size_t i = 0; i < 4; i++)
        if (dump_gather(dir, dtypes[i]))
            return 1;
    us_pk_shape pkm = { 7, 2, 16, 33, 29, 1, 1, 8, 8, US_PK_SUM, US_PK_ACT_NONE };
    us_pk_shape tdqkr = { 6, 2, 12, 30, 30, 2, 1, 7, 10, US_PK_TUCKER, US_PK_ACT_SOFTMAX };
    us_pk_shape mcs = { 5, 3, 8, 20, 24, 2, 2, 6, 9, US_PK_TUCKER, US_PK_ACT_SOFTMAX };
    us_pk_shape mcs_raw = { 4, 2, 8, 20, 24, 3, 3, 6, 9, US_PK_TUCKER, US_PK_ACT_NONE };
    if (dump_topk(dir) || dump_quant(dir) || dump_score(dir, "score_pkm", pkm) ||
        dump_score(dir, "score_tdqkr", tdqkr) || dump_score(dir, "score_mcs", mcs) ||
        dump_score(dir, "score_mcs_raw", mcs_raw))
        return 1;
    return 0;
}

static void test_npy_writer(void **state)
{
    (void)state;
    char dir[] = "/tmp/us_npy_XXXXXX";
    assert_non_null(mkdtemp(dir));
    float data[6] = { 1, 2, 3, 4, 5, 6 };
    assert_int_equal(write_npy(dir, "a", "<f4", data, 4, 2, (size_t[]){ 2, 3 }), 0);
    char path[64];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char buf[128 + 24];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(n, 128 + 24);                /* header padded to 128 bytes */
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    assert_int_equal(buf[8] | buf[9] << 8, 118);
    assert_int_equal(buf[127], '\n');
    assert_non_null(memmem(buf, 128, "'shape': (2, 3)", 15));
    assert_memory_equal(buf + 128, data, 24);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0)
        return dump_all(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_kernels_dump [--dump DIR]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
