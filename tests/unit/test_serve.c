/* test_serve.c — a shard answering requests over an in-memory table
 * (shard/serve.h), against the scalar gather reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/gather.h"
#include "shard/serve.h"

enum { ROWS = 64, DIM = 5, BLOCK_BITS = 3, N_BLOCKS = ROWS >> BLOCK_BITS };

typedef struct fixture {
    float data[ROWS * DIM];
    const uint8_t *blocks[N_BLOCKS];     /* odd blocks not held */
    const uint8_t *all_blocks[N_BLOCKS];
    us_rows_view view, full;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    for (int i = 0; i < ROWS * DIM; i++)
        f->data[i] = (float)((i * 37) % 101) / 16.0f - 3.0f;
    for (int b = 0; b < N_BLOCKS; b++) {
        f->all_blocks[b] = (const uint8_t *)(f->data + b * (1 << BLOCK_BITS) * DIM);
        f->blocks[b] = b % 2 ? NULL : f->all_blocks[b];
    }
    f->view = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = DIM, .block_bits = BLOCK_BITS,
                              .row_stride_bytes = DIM * 4, .rows = ROWS, .n_blocks = N_BLOCKS,
                              .blocks = f->blocks };
    f->full = f->view;
    f->full.blocks = f->all_blocks;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

/* Request: token 0 -> rows {1, 17}, token 1 -> nothing, token 2 -> {1, 2, 17}. */
static uint64_t build(us_wire_buf *b, uint32_t table, uint64_t bad_row, uint8_t mode)
{
    uint64_t rows[3] = { 1, 17, bad_row ? bad_row : 2 };
    uint32_t tok[5] = { 0, 0, 2, 2, 2 }, ref[5] = { 0, 1, 0, 2, 1 };
    float w[5] = { 0.5f, -2.0f, 1.5f, 0.25f, 3.0f };
    uint8_t g[5] = { 0, 1, 1, 0, 1 };
    uint32_t n_pairs = mode == US_WIRE_PUSH ? 5 : 0;
    int groups = mode == US_WIRE_PUSH;
    uint64_t len = us_wire_req_bytes(3, n_pairs, groups), at;
    us_wire_req r;
    us_err e;
    b->len = 0;
    assert_int_equal(us_wire_buf_append(b, len, &at, &e), US_OK);
    us_wire_req_desc d = {
        .mode = mode, .flags = groups ? US_WIRE_F_GROUPS : 0, .table_id = table,
        .batch_id = 9, .n_tokens = mode == US_WIRE_PUSH ? 3 : 0, .n_rows = 3,
        .n_pairs = n_pairs, .n_groups = 2,
    };
    assert_int_equal(us_wire_req_init(b->data, len, &d, &r, &e), US_OK);
    memcpy((void *)r.rows, rows, sizeof rows);
    if (n_pairs) {
        memcpy((void *)r.pair_token, tok, sizeof tok);
        memcpy((void *)r.pair_ref, ref, sizeof ref);
        memcpy((void *)r.pair_weight, w, sizeof w);
        memcpy((void *)r.pair_group, g, sizeof g);
    }
    return len;
}

static void test_push_grouped(void **state)
{
    fixture *f = *state;
    us_server s;
    us_err e = {0};
    assert_int_equal(us_server_init(&s, 4, 0, &f->view, NULL, 1, &e), US_OK);
    us_wire_buf req = {0}, out = {0};
    uint64_t len = build(&req, 4, 0, US_WIRE_PUSH);
    bool rejected = true;
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, &rejected, NULL, &e), US_OK);
    assert_false(rejected);
    us_wire_resp a;
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 4, 0 }, &a, &e), US_OK);
    /* reference: the same pairs per token through the scalar kernel */
    uint64_t rows[3][3] = { { 1, 17, 1 }, { 1, 1, 1 }, { 1, 2, 17 } };
    float w[3][3] = { { 0.5f, -2.0f, 0 }, { 0, 0, 0 }, { 1.5f, 0.25f, 3.0f } };
    uint8_t g[3][3] = { { 0, 1, 0 }, { 0, 0, 0 }, { 1, 0, 1 } };
    float want[3 * 2 * DIM];
    assert_int_equal(us_gather_sum_grouped_ref(want, &f->full, &rows[0][0], &w[0][0], &g[0][0],
                                               3, 3, 2, &e), US_OK);
    assert_memory_equal(a.sums, want, sizeof want);    /* bit-identical */
    for (int c = 0; c < 2 * DIM; c++)
        assert_true(a.sums[2 * DIM + c] == 0.0f);      /* token without pairs */
    assert_true(fabsf(a.sums[0] - 0.5f * f->data[1 * DIM]) < 1e-6f);
    us_server_free(&s);
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
}

static void test_rows_and_nop(void **state)
{
    fixture *f = *state;
    us_server s;
    us_err e = {0};
    assert_int_equal(us_server_init(&s, 4, 0, &f->view, NULL, 1, &e), US_OK);
    us_wire_buf req = {0}, out = {0};
    uint64_t len = build(&req, 4, 0, US_WIRE_ROWS);
    assert_int_equal(us_serve_request(&s, req.data, len, US_WIRE_F_ALL_STOPPED, &out, NULL,
                                      NULL, &e), US_OK);
    us_wire_resp a;
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 4, 0 }, &a, &e), US_OK);
    assert_memory_equal(a.row_bytes, &f->data[1 * DIM], DIM * 4);
    assert_memory_equal(a.row_bytes + DIM * 4, &f->data[17 * DIM], DIM * 4);
    assert_memory_equal(a.row_bytes + 2 * DIM * 4, &f->data[2 * DIM], DIM * 4);
    assert_true(a.hdr->flags & US_WIRE_F_ALL_STOPPED);
    us_server_free(&s);
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
}

/* Bad requests get error answers naming the problem; the next good one is
 * served as if nothing happened. */
static void test_rejects_then_serves(void **state)
{
    fixture *f = *state;
    us_server s;
    us_err e = {0};
    assert_int_equal(us_server_init(&s, 4, 2, &f->view, NULL, 1, &e), US_OK);
    us_wire_buf req = {0}, out = {0};
    struct { uint32_t table; uint64_t row; int code; const char *text; } cases[] = {
        { 4, 64, US_ERANGE, "row 64 out of range" },
        { 4, 9, US_ENOTFOUND, "row 9 (block 1) is not held by this shard" },
        { 5, 0, US_ENOTFOUND, "table 5 is not served here" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t len = build(&req, cases[i].table, cases[i].row, US_WIRE_PUSH);
        bool rejected = false;
        out.len = 0;
        assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, &rejected, NULL, &e),
                         US_OK);
        assert_true(rejected);
        us_wire_resp a;
        assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 4, 0 }, &a, &e), US_OK);
        assert_int_equal(a.hdr->status, cases[i].code);
        char text[600] = "";
        memcpy(text, a.message, a.message_len);
        if (!strstr(text, cases[i].text))
            fail_msg("'%s' lacks '%s'", text, cases[i].text);
    }
    /* garbage: 8 bytes of nothing */
    uint64_t junk = 0;
    bool rejected = false;
    out.len = 0;
    assert_int_equal(us_serve_request(&s, &junk, 8, 0, &out, &rejected, NULL, &e), US_OK);
    assert_true(rejected);
    assert_int_equal(((us_wire_resp_hdr *)out.data)->status, US_EPROTO);
    assert_int_equal(s.stats.rejected, 4);
    /* and a good one still works */
    uint64_t len = build(&req, 4, 0, US_WIRE_PUSH);
    out.len = 0;
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, &rejected, NULL, &e), US_OK);
    assert_false(rejected);
    assert_int_equal(((us_wire_resp_hdr *)out.data)->status, US_OK);
    us_server_free(&s);
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
}

/* int8 rows with per-row scales: PUSH equals the scalar kernel, ROWS carries
 * the scales first and the raw int8 bytes after. */
static void test_int8(void **state)
{
    (void)state;
    enum { R = 16, BB = 2, NB = R >> BB };
    int8_t q[R * DIM];
    float scales[R];
    for (int i = 0; i < R * DIM; i++)
        q[i] = (int8_t)((i * 29) % 255 - 127);
    for (int r = 0; r < R; r++)
        scales[r] = 0.01f * (float)(r + 1);
    const uint8_t *blocks[NB];
    const float *bscales[NB];
    for (int b = 0; b < NB; b++) {
        blocks[b] = (const uint8_t *)(q + b * (1 << BB) * DIM);
        bscales[b] = scales + b * (1 << BB);
    }
    us_rows_view v = { .dtype = US_DTYPE_INT8, .dim = DIM, .block_bits = BB,
                       .row_stride_bytes = DIM, .rows = R, .n_blocks = NB, .blocks = blocks,
                       .block_scales = bscales };
    us_server s;
    us_err e = {0};
    assert_int_equal(us_server_init(&s, 4, 0, &v, NULL, 1, &e), US_OK);
    us_wire_buf req = {0}, out = {0};
    uint64_t len = build(&req, 4, 0, US_WIRE_PUSH);
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, NULL, NULL, &e), US_OK);
    us_wire_resp a;
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 1, 1 }, &a, &e), US_OK);
    /* rows 1, 17 are out of this 16-row table: the request is rejected */
    assert_int_equal(a.hdr->status, US_ERANGE);
    us_server_free(&s);

    /* a table big enough: 32 rows, rows 1, 2, 17 exist */
    enum { R2 = 32, NB2 = R2 >> BB };
    int8_t q2[R2 * DIM];
    float sc2[R2];
    const uint8_t *bl2[NB2];
    const float *bs2[NB2];
    for (int i = 0; i < R2 * DIM; i++)
        q2[i] = (int8_t)((i * 29) % 255 - 127);
    for (int r = 0; r < R2; r++)
        sc2[r] = 0.01f * (float)(r + 1);
    for (int b = 0; b < NB2; b++) {
        bl2[b] = (const uint8_t *)(q2 + b * (1 << BB) * DIM);
        bs2[b] = sc2 + b * (1 << BB);
    }
    us_rows_view v2 = v;
    v2.rows = R2;
    v2.n_blocks = NB2;
    v2.blocks = bl2;
    v2.block_scales = bs2;
    assert_int_equal(us_server_init(&s, 4, 0, &v2, NULL, 1, &e), US_OK);
    out.len = 0;
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, NULL, NULL, &e), US_OK);
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 1, 1 }, &a, &e), US_OK);
    assert_int_equal(a.hdr->status, US_OK);
    uint64_t prow[9] = { 1, 17, 1, 1, 1, 1, 1, 2, 17 };
    float pw[9] = { 0.5f, -2.0f, 0, 0, 0, 0, 1.5f, 0.25f, 3.0f };
    uint8_t pg[9] = { 0, 1, 0, 0, 0, 0, 1, 0, 1 };
    float want[3 * 2 * DIM];
    assert_int_equal(us_gather_sum_grouped_ref(want, &v2, prow, pw, pg, 3, 3, 2, &e), US_OK);
    assert_memory_equal(a.sums, want, sizeof want);
    assert_true(fabsf(a.sums[0] - 0.5f * 0.02f * (float)q2[1 * DIM]) < 1e-6f);
    /* ROWS: scales first, then the stored bytes */
    len = build(&req, 4, 0, US_WIRE_ROWS);
    out.len = 0;
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, NULL, NULL, &e), US_OK);
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 1, 1 }, &a, &e), US_OK);
    assert_true(a.row_scales[0] == sc2[1] && a.row_scales[1] == sc2[17] &&
                a.row_scales[2] == sc2[2]);
    assert_memory_equal(a.row_bytes + DIM, &q2[17 * DIM], DIM);
    us_server_free(&s);

    /* row 17's block held but its scales not: the serve path's own row
     * check rejects the PUSH (the kernel no longer checks rows again) */
    bs2[17 >> BB] = NULL;
    assert_int_equal(us_server_init(&s, 4, 0, &v2, NULL, 1, &e), US_OK);
    len = build(&req, 4, 0, US_WIRE_PUSH);
    out.len = 0;
    assert_int_equal(us_serve_request(&s, req.data, len, 0, &out, NULL, NULL, &e), US_OK);
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, DIM, 1, 1 }, &a, &e), US_OK);
    assert_int_equal(a.hdr->status, US_ENOTFOUND);
    assert_non_null(strstr(s.last_error.msg, "row 17 (block 4) is not held"));
    us_server_free(&s);
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_grouped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rows_and_nop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects_then_serves, setup, teardown),
        cmocka_unit_test(test_int8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
