/* test_wire.c — gather protocol layout and validation (proto/wire.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/wire.h"

/* A 3-row, 5-pair, 3-token request with groups, in a fresh 8-aligned buffer. */
static uint8_t *make_req(uint64_t *len, int with_groups)
{
    *len = us_wire_req_bytes(3, 5, with_groups);
    uint8_t *buf = aligned_alloc(8, (*len + 7) & ~7ull);
    us_wire_req r;
    us_err e = {0};
    us_wire_req_desc d = {
        .mode = US_WIRE_PUSH, .flags = with_groups ? US_WIRE_F_GROUPS : 0, .table_id = 7,
        .batch_id = 42, .n_tokens = 3, .n_rows = 3, .n_pairs = 5,
        .n_groups = with_groups ? 4 : 1,
    };
    assert_int_equal(us_wire_req_init(buf, *len, &d, &r, &e), US_OK);
    uint64_t rows[3] = { 10, 20, 30 };
    uint32_t tok[5] = { 0, 0, 1, 2, 2 }, ref[5] = { 0, 1, 1, 2, 0 };
    float w[5] = { 1, 2, 3, 4, 5 };
    uint8_t g[5] = { 0, 3, 1, 2, 0 };
    memcpy((void *)r.rows, rows, sizeof rows);
    memcpy((void *)r.pair_token, tok, sizeof tok);
    memcpy((void *)r.pair_ref, ref, sizeof ref);
    memcpy((void *)r.pair_weight, w, sizeof w);
    if (with_groups)
        memcpy((void *)r.pair_group, g, sizeof g);
    return buf;
}

static void test_req_sizes_and_roundtrip(void **state)
{
    (void)state;
    assert_int_equal(us_wire_req_bytes(0, 0, 0), 48);
    assert_int_equal(us_wire_req_bytes(3, 5, 0), 48 + 24 + 60 + 4);      /* padded to 8 */
    assert_int_equal(us_wire_req_bytes(3, 5, 1), 48 + 24 + 60 + 5 + 7);
    uint64_t len;
    uint8_t *buf = make_req(&len, 1);
    us_wire_req r;
    us_err e = {0};
    assert_int_equal(us_wire_req_parse(buf, len, NULL, &r, &e), US_OK);
    assert_int_equal(r.hdr->table_id, 7);
    assert_int_equal(r.hdr->batch_id, 42);
    assert_int_equal(r.rows[2], 30);
    assert_int_equal(r.pair_token[4], 2);
    assert_int_equal(r.pair_ref[3], 2);
    assert_true(r.pair_weight[4] == 5.0f);
    assert_int_equal(r.pair_group[1], 3);
    free(buf);
}

static void expect_reject(uint8_t *buf, uint64_t len, const us_wire_limits *lim, int code,
                          const char *needle)
{
    us_wire_req r;
    us_err e = {0};
    assert_int_equal(us_wire_req_parse(buf, len, lim, &r, &e), code);
    if (needle && strstr(e.msg, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_req_rejects(void **state)
{
    (void)state;
    uint64_t len;
    uint8_t *buf = make_req(&len, 1);
    us_wire_req_hdr *h = (us_wire_req_hdr *)buf;
    us_wire_req r;
    us_err e;
    assert_int_equal(us_wire_req_parse(buf, len, NULL, &r, &e), US_OK);

    expect_reject(buf, 47, NULL, US_EPROTO, "shorter");
    expect_reject(NULL, len, NULL, US_EPROTO, NULL);
    h->magic ^= 1;
    expect_reject(buf, len, NULL, US_EPROTO, "magic");
    h->magic ^= 1;
    h->version = 2;
    expect_reject(buf, len, NULL, US_EVERSION, "version");
    h->version = 1;
    h->mode = 9;
    expect_reject(buf, len, NULL, US_EPROTO, "mode");
    h->mode = US_WIRE_PUSH;
    h->flags |= 0x80;
    expect_reject(buf, len, NULL, US_EPROTO, "flags");
    h->flags &= 0x7f;
    h->reserved = 1;
    expect_reject(buf, len, NULL, US_EPROTO, "reserved");
    h->reserved = 0;
    h->n_groups = 0;
    expect_reject(buf, len, NULL, US_EPROTO, "n_groups");
    h->n_groups = 257;
    expect_reject(buf, len, NULL, US_EPROTO, "n_groups");
    h->n_groups = 4;
    h->total_bytes += 8;
    expect_reject(buf, len, NULL, US_EPROTO, "length");
    h->total_bytes -= 8;
    h->n_pairs = 1000;   /* counts would need more bytes than received */
    expect_reject(buf, len, NULL, US_EPROTO, "need");
    h->n_pairs = 5;
    us_wire_limits lim = { .max_bytes = len, .max_tokens = 2, .max_pairs = 100 };
    expect_reject(buf, len, &lim, US_ERANGE, "limits");
    lim.max_tokens = 3;
    assert_int_equal(us_wire_req_parse(buf, len, &lim, &r, &e), US_OK);
    /* every truncation is a length error, never a crash */
    for (uint64_t l = 0; l < len; l++)
        assert_int_not_equal(us_wire_req_parse(buf, l, NULL, &r, &e), US_OK);
    free(buf);
}

static void test_req_rejects_arrays(void **state)
{
    (void)state;
    uint64_t len;
    uint8_t *buf = make_req(&len, 1);
    us_wire_req r;
    us_err e;
    assert_int_equal(us_wire_req_parse(buf, len, NULL, &r, &e), US_OK);
    uint32_t *tok = (uint32_t *)r.pair_token, *ref = (uint32_t *)r.pair_ref;
    float *w = (float *)r.pair_weight;
    uint8_t *g = (uint8_t *)r.pair_group;

    tok[4] = 3;   /* token out of range */
    expect_reject(buf, len, NULL, US_EPROTO, "pair 4: token 3");
    tok[4] = 2;
    tok[1] = 1;
    tok[2] = 0;   /* not sorted */
    expect_reject(buf, len, NULL, US_EPROTO, "not sorted");
    tok[1] = 0;
    tok[2] = 1;
    ref[0] = 3;
    expect_reject(buf, len, NULL, US_EPROTO, "row index 3");
    ref[0] = 0;
    w[2] = NAN;
    expect_reject(buf, len, NULL, US_EPROTO, "weight");
    w[2] = INFINITY;
    expect_reject(buf, len, NULL, US_EPROTO, "weight");
    w[2] = 3;
    g[3] = 4;
    expect_reject(buf, len, NULL, US_EPROTO, "group 4");
    g[3] = 2;
    assert_int_equal(us_wire_req_parse(buf, len, NULL, &r, &e), US_OK);
    free(buf);

    /* NOP must be empty; ROWS carries no pairs */
    uint64_t nop_len = us_wire_req_bytes(0, 0, 0);
    uint64_t nop[6];
    us_wire_req_desc nd = { .mode = US_WIRE_NOP, .flags = US_WIRE_F_STOP, .table_id = 7,
                            .batch_id = 1, .n_groups = 1 };
    assert_int_equal(us_wire_req_init(nop, sizeof nop, &nd, &r, &e), US_OK);
    assert_int_equal(us_wire_req_parse(nop, nop_len, NULL, &r, &e), US_OK);
    ((us_wire_req_hdr *)nop)->n_tokens = 2;
    expect_reject((uint8_t *)nop, nop_len, NULL, US_EPROTO, "NOP");
    buf = make_req(&len, 0);
    ((us_wire_req_hdr *)buf)->mode = US_WIRE_ROWS;
    expect_reject(buf, len, NULL, US_EPROTO, "only PUSH");
    free(buf);
}

/* Random corruption never crashes the parser and never passes a message
 * whose arrays are out of range (ASan run checks memory safety). */
static void test_req_fuzz(void **state)
{
    (void)state;
    uint64_t len, seed = 12345;
    uint8_t *orig = make_req(&len, 1);
    uint8_t *buf = aligned_alloc(8, (len + 7) & ~7ull);
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, orig, len);
        for (int f = 0; f < 1 + it % 4; f++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            buf[(seed >> 33) % len] ^= (uint8_t)(1u << ((seed >> 20) & 7));
        }
        us_wire_req r;
        us_err e;
        if (us_wire_req_parse(buf, len, NULL, &r, &e) == US_OK) {
            accepted++;
            for (uint32_t p = 0; p < r.hdr->n_pairs; p++) {
                assert_true(r.pair_token[p] < r.hdr->n_tokens);
                assert_true(r.pair_ref[p] < r.hdr->n_rows);
                assert_true(isfinite(r.pair_weight[p]));
            }
        }
    }
    /* flips in row ids and benign weight bits still parse */
    assert_true(accepted > 0 && accepted < 20000);
    free(buf);
    free(orig);
}

static void test_resp(void **state)
{
    (void)state;
    uint64_t len;
    uint8_t *req = make_req(&len, 1);
    const us_wire_req_hdr *asked = (const us_wire_req_hdr *)req;
    uint32_t dim = 6;
    uint64_t rlen = us_wire_resp_push_bytes(3, 4, dim);
    assert_int_equal(rlen, 48 + 3 * 4 * 6 * 4);
    uint8_t *resp = aligned_alloc(8, rlen);
    us_wire_resp_init(resp, &(us_wire_resp_desc){ .mode = US_WIRE_PUSH,
                      .flags = US_WIRE_F_ALL_STOPPED, .table_id = 7, .batch_id = 42,
                      .n_tokens = 3, .n_groups = 4, .dim = dim, .total_bytes = rlen });
    float *sums = (float *)(resp + 48);
    for (int i = 0; i < 3 * 4 * 6; i++)
        sums[i] = (float)i;
    us_wire_resp a;
    us_err e = {0};
    const us_wire_resp_expect want = { .asked = asked, .dim = dim, .elem_bytes = 4 };
    const us_wire_resp_expect wider = { .asked = asked, .dim = dim + 1, .elem_bytes = 4 };
    assert_int_equal(us_wire_resp_parse(resp, rlen, &want, &a, &e), US_OK);
    assert_true(a.sums[71] == 71.0f);
    assert_int_equal(us_wire_resp_parse(resp, rlen, &wider, &a, &e), US_EPROTO);
    assert_int_equal(us_wire_resp_parse(resp, rlen - 4, &want, &a, &e), US_EPROTO);
    ((us_wire_resp_hdr *)resp)->batch_id = 41;
    assert_int_equal(us_wire_resp_parse(resp, rlen, &want, &a, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "batch 41"));
    free(resp);

    /* error answers carry code and text */
    us_err cause = {0};
    us_err_set(&cause, US_ERANGE, "row 99 out of range");
    void *eb;
    uint64_t elen;
    assert_int_equal(us_wire_resp_error(&eb, &elen, &(us_wire_resp_desc){
                         .mode = US_WIRE_PUSH, .table_id = 7, .batch_id = 42 }, &cause), US_OK);
    assert_int_equal(us_wire_resp_parse(eb, elen, &want, &a, &e), US_OK);
    assert_int_equal(a.hdr->status, US_ERANGE);
    assert_int_equal(a.message_len, strlen(cause.msg));
    assert_memory_equal(a.message, cause.msg, a.message_len);
    free(eb);

    /* ROWS of an int8 table: scales first, then rows, padded */
    ((us_wire_req_hdr *)req)->mode = US_WIRE_ROWS;
    uint64_t rows_len = us_wire_resp_rows_bytes(3, 5, 1, 1);
    assert_int_equal(rows_len, 48 + 12 + 15 + 5);
    uint8_t *rb = aligned_alloc(8, rows_len);
    us_wire_resp_init(rb, &(us_wire_resp_desc){ .mode = US_WIRE_ROWS, .table_id = 7,
                      .batch_id = 42, .dim = 5, .n_rows = 3, .total_bytes = rows_len });
    ((float *)(rb + 48))[2] = 0.5f;
    rb[48 + 12 + 14] = 0x7f;
    const us_wire_resp_expect int8_rows = { .asked = asked, .dim = 5, .elem_bytes = 1,
                                            .with_scales = 1 };
    assert_int_equal(us_wire_resp_parse(rb, rows_len, &int8_rows, &a, &e), US_OK);
    assert_true(a.row_scales[2] == 0.5f);
    assert_int_equal(a.row_bytes[14], 0x7f);
    free(rb);
    free(req);
}

/* Random corruption of a PUSH answer: the parser never reads past the
 * buffer (ASan) and accepts only answers consistent with the request. */
static void test_resp_fuzz(void **state)
{
    (void)state;
    uint64_t len;
    uint8_t *req = make_req(&len, 1);
    const us_wire_req_hdr *asked = (const us_wire_req_hdr *)req;
    uint64_t rlen = us_wire_resp_push_bytes(3, 4, 6);
    uint8_t *orig = aligned_alloc(8, rlen), *buf = aligned_alloc(8, rlen);
    us_wire_resp_init(orig, &(us_wire_resp_desc){ .mode = US_WIRE_PUSH, .table_id = 7,
                      .batch_id = 42, .n_tokens = 3, .n_groups = 4, .dim = 6,
                      .total_bytes = rlen });
    memset(orig + 48, 0x3f, rlen - 48);
    uint64_t seed = 99;
    int accepted = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, orig, rlen);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t at = (seed >> 33) % 48;           /* header fields only */
        buf[at] ^= (uint8_t)(1u << ((seed >> 20) & 7));
        us_wire_resp a;
        us_err e;
        const us_wire_resp_expect want = { .asked = asked, .dim = 6, .elem_bytes = 4 };
        if (us_wire_resp_parse(buf, rlen, &want, &a, &e) == US_OK) {
            accepted++;
            if (a.hdr->status >= 0) {
                assert_int_equal(a.hdr->n_tokens, 3);
                assert_int_equal(a.hdr->n_groups, 4);
                assert_int_equal(a.hdr->dim, 6);
                assert_non_null(a.sums);
            } else {
                assert_true(a.message_len == rlen - 48);   /* flipped into an error */
            }
        }
    }
    /* flips of the status sign or of unused bits parse; most do not */
    assert_true(accepted > 0 && accepted < 20000);
    free(buf);
    free(orig);
    free(req);
}

static void test_buf_append(void **state)
{
    (void)state;
    us_wire_buf b = {0};
    uint64_t at;
    us_err e;
    assert_int_equal(us_wire_buf_append(&b, 5, &at, &e), US_OK);
    assert_int_equal(at, 0);
    assert_int_equal(us_wire_buf_append(&b, 10000, &at, &e), US_OK);
    assert_int_equal(at, 8);
    assert_int_equal(b.len, 10008);
    assert_int_equal(((uintptr_t)b.data) & 7, 0);
    assert_int_equal(us_wire_buf_append(&b, 1, &at, &e), US_OK);
    assert_int_equal(at, 10008);
    us_wire_buf_free(&b);
    assert_null(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_sizes_and_roundtrip),
        cmocka_unit_test(test_req_rejects),
        cmocka_unit_test(test_req_rejects_arrays),
        cmocka_unit_test(test_req_fuzz),
        cmocka_unit_test(test_resp),
        cmocka_unit_test(test_resp_fuzz),
        cmocka_unit_test(test_buf_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
