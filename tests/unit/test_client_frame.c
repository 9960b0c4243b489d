/* test_client_frame.c — client API frames (proto/client_frame.h): the
 * incremental reader byte by byte and in bulk, lengths checked before
 * allocation, pack/unpack round trips, request shape and limit checks with
 * the status each failure gets, response shape checks, and the token file
 * and address rules of proto/us_client.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/client_frame.h"
#include "proto/us_client.h"
#include "tests/unit/tmpdir.h"

#define ST(x) ULTRASHARD__STATUS__STATUS_##x

static uint64_t rows[6] = { 1, 2, 3, 4, 5, 6 };
static float weights[6] = { 0.5f, -1.0f, 2.0f, 0.0f, 1.5f, 3.0f };

/* A valid Lookup request of 2 tokens x k 3 (borrowing the static arrays). */
static void lookup_request(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    ultrashard__request__init(r);
    ultrashard__lookup_request__init(l);
    l->table = "table_0";
    l->n_tokens = 2;
    l->k = 3;
    l->n_rows = l->n_weights = 6;
    l->rows = rows;
    l->weights = weights;
    r->version = 1;
    r->request_id = 42;
    r->body_case = ULTRASHARD__REQUEST__BODY_LOOKUP;
    r->lookup = l;
}

static void test_reader_byte_by_byte_and_bulk(void **state)
{
    (void)state;
    Ultrashard__Request r;
    Ultrashard__LookupRequest l;
    lookup_request(&r, &l);
    uint8_t *buf;
    size_t len;
    us_err e = {0};
    assert_int_equal(us_frame_pack_request(&r, 0, &buf, &len, &e), US_OK);
    uint8_t two[2 * 512];
    assert_true(2 * len <= sizeof two);
    memcpy(two, buf, len);
    memcpy(two + len, buf, len);
    us_frame_reader rd;
    us_frame_reader_init(&rd, 0);
    bool done = false;
    size_t used, i = 0;
    for (; i < len && !done; i++) {   /* one byte at a time */
        assert_false(i > 0 && !us_frame_reader_partial(&rd));
        assert_int_equal(us_frame_reader_feed(&rd, two + i, 1, &used, &done, &e), US_OK);
        assert_int_equal(used, 1);
    }
    assert_true(done);
    assert_int_equal(i, len);
    assert_int_equal(us_frame_reader_feed(&rd, two, 1, &used, &done, &e), US_OK);
    assert_int_equal(used, 0);   /* a complete frame waits to be taken */
    uint32_t n;
    uint8_t *p = us_frame_reader_take(&rd, &n);
    assert_non_null(p);
    assert_int_equal(n, len - 4);
    assert_memory_equal(p, buf + 4, n);
    free(p);
    /* both frames in one feed: the reader stops at the first frame's end */
    assert_int_equal(us_frame_reader_feed(&rd, two, 2 * len, &used, &done, &e), US_OK);
    assert_true(done);
    assert_int_equal(used, len);
    free(us_frame_reader_take(&rd, &n));
    assert_int_equal(us_frame_reader_feed(&rd, two + len, len, &used, &done, &e), US_OK);
    assert_true(done);
    Ultrashard__Request *got;
    p = us_frame_reader_take(&rd, &n);
    assert_int_equal(us_frame_unpack_request(p, n, &got, &e), US_OK);
    assert_int_equal(got->request_id, 42);
    assert_int_equal(got->lookup->n_rows, 6);
    assert_true(got->lookup->rows[5] == 6 && got->lookup->weights[4] == 1.5f);
    assert_int_equal(us_request_check(got, NULL, &e), ST(OK));
    ultrashard__request__free_unpacked(got, NULL);
    free(p);
    free(buf);
    us_frame_reader_free(&rd);
}

static void test_reader_refuses_lengths(void **state)
{
    (void)state;
    us_frame_reader rd;
    us_err e = {0};
    size_t used;
    bool done;
    const uint8_t huge[4] = { 0x01, 0x04, 0x00, 0x00 };   /* 1025 > 1024 */
    us_frame_reader_init(&rd, 1024);
    assert_int_equal(us_frame_reader_feed(&rd, huge, 4, &used, &done, &e), US_ERANGE);
    assert_null(rd.payload);   /* refused before allocating */
    assert_non_null(strstr(e.msg, "1025"));
    assert_non_null(strstr(e.msg, "1024"));
    us_frame_reader_free(&rd);
    const uint8_t max[4] = { 0xff, 0xff, 0xff, 0xff };
    us_frame_reader_init(&rd, 0);
    assert_int_equal(us_frame_reader_feed(&rd, max, 4, &used, &done, &e), US_ERANGE);
    assert_null(rd.payload);
    us_frame_reader_free(&rd);
    const uint8_t zero[4] = { 0 };
    us_frame_reader_init(&rd, 0);
    assert_int_equal(us_frame_reader_feed(&rd, zero, 4, &used, &done, &e), US_EPROTO);
    us_frame_reader_free(&rd);
    /* exactly the limit is fine */
    us_frame_reader_init(&rd, 1024);
    const uint8_t ok[4] = { 0x00, 0x04, 0x00, 0x00 };
    assert_int_equal(us_frame_reader_feed(&rd, ok, 4, &used, &done, &e), US_OK);
    assert_false(done);
    assert_true(us_frame_reader_partial(&rd));
    us_frame_reader_free(&rd);
}

static void test_unpack_refuses_garbage(void **state)
{
    (void)state;
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    Ultrashard__Request *r;
    Ultrashard__Response *s;
    us_err e = {0};
    assert_int_equal(us_frame_unpack_request(garbage, sizeof garbage, &r, &e), US_EPROTO);
    assert_int_equal(us_frame_unpack_response(garbage, sizeof garbage, &s, &e), US_EPROTO);
    /* a truncated length-delimited field */
    const uint8_t trunc[] = { 0x08, 0x01, 0x5a, 0x10, 0x0a };
    assert_int_equal(us_frame_unpack_request(trunc, sizeof trunc, &r, &e), US_EPROTO);
    /* found by fuzz_client_frame: an Auth body holding an unknown field
     * whose tag is written 0x80 0x00 (field number 0). protobuf-c reads it;
     * packed again the tag is 0x00 and protobuf-c refuses its own output */
    const uint8_t zero_field[] = { 0x08, 0x01, 0x10, 0x01, 0x52, 0x07, 0x2a, 0x02, 0x5a,
                                   0x3f, 0x80, 0x00, 0x00 };
    assert_int_equal(us_frame_unpack_request(zero_field, sizeof zero_field, &r, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "field numbered 0"));
    const uint8_t zero_resp[] = { 0x08, 0x01, 0x10, 0x01, 0x5a, 0x03, 0x80, 0x00, 0x00 };
    assert_int_equal(us_frame_unpack_response(zero_resp, sizeof zero_resp, &s, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "field numbered 0"));
    /* the same body with a valid unknown field (number 5) is accepted and
     * packs back to bytes that unpack (unknown fields are kept) */
    const uint8_t unknown5[] = { 0x08, 0x01, 0x10, 0x01, 0x52, 0x04, 0x2a, 0x02, 0x5a, 0x3f };
    assert_int_equal(us_frame_unpack_request(unknown5, sizeof unknown5, &r, &e), US_OK);
    uint8_t *buf;
    size_t len;
    assert_int_equal(us_frame_pack_request(r, 0, &buf, &len, &e), US_OK);
    Ultrashard__Request *again;
    assert_int_equal(us_frame_unpack_request(buf + US_FRAME_HEADER_BYTES,
                                             len - US_FRAME_HEADER_BYTES, &again, &e), US_OK);
    assert_int_equal(again->body_case, ULTRASHARD__REQUEST__BODY_AUTH);
    ultrashard__request__free_unpacked(again, NULL);
    ultrashard__request__free_unpacked(r, NULL);
    free(buf);
}

/* Mutates a copy of the valid lookup and expects `status` with `needle`. */
static void expect_lookup(void (*mutate)(Ultrashard__Request *, Ultrashard__LookupRequest *),
                          const us_request_limits *lim, int status, const char *needle)
{
    Ultrashard__Request r;
    Ultrashard__LookupRequest l;
    lookup_request(&r, &l);
    mutate(&r, &l);
    us_err e = {0};
    assert_int_equal(us_request_check(&r, lim, &e), status);
    if (needle != NULL && strstr(e.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
}

static void m_version(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)l; r->version = 2; }
static void m_version0(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)l; r->version = 0; }
static void m_id0(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)l; r->request_id = 0; }
static void m_nobody(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    (void)l;
    r->body_case = ULTRASHARD__REQUEST__BODY__NOT_SET;
}
static void m_short(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)r; l->n_weights = 5; }
static void m_k0(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)r; l->k = 0; }
static void m_table(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)r; l->table = ""; }
static void m_groups_len(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    (void)r;
    static uint8_t g[4];
    l->groups.len = 4;
    l->groups.data = g;
}
static void m_group_id(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    (void)r;
    static uint8_t g[6] = { 0, 1, 2, 0, 1, 3 };
    l->groups.len = 6;
    l->groups.data = g;
    l->n_groups = 3;
}
static void m_groups_ok(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    m_group_id(r, l);
    l->n_groups = 4;
}
static void m_many_groups(Ultrashard__Request *r, Ultrashard__LookupRequest *l)
{
    (void)r;
    l->n_groups = 257;
}
static void m_none(Ultrashard__Request *r, Ultrashard__LookupRequest *l) { (void)r; (void)l; }

static void test_request_check_lookup(void **state)
{
    (void)state;
    us_request_limits lim = { .max_request_tokens = 2, .max_lookup_pairs = 6 };
    expect_lookup(m_none, &lim, ST(OK), NULL);
    expect_lookup(m_groups_ok, &lim, ST(OK), NULL);
    expect_lookup(m_version, &lim, ST(UNSUPPORTED_VERSION), "version 2");
    expect_lookup(m_version0, &lim, ST(BAD_REQUEST), "version 0");
    expect_lookup(m_id0, &lim, ST(BAD_REQUEST), "request_id 0");
    expect_lookup(m_nobody, &lim, ST(BAD_REQUEST), "no body");
    expect_lookup(m_short, &lim, ST(BAD_REQUEST), "weights (5)");
    expect_lookup(m_k0, &lim, ST(BAD_REQUEST), "k 0");
    expect_lookup(m_table, &lim, ST(BAD_REQUEST), "table");
    expect_lookup(m_groups_len, &lim, ST(BAD_REQUEST), "groups holds 4");
    expect_lookup(m_group_id, &lim, ST(OUT_OF_RANGE), "group 3 of pair 5");
    expect_lookup(m_many_groups, &lim, ST(TOO_LARGE), "n_groups 257");
    us_request_limits tight = { .max_request_tokens = 1 };
    expect_lookup(m_none, &tight, ST(TOO_LARGE), "n_tokens 2");
    us_request_limits pairs = { .max_lookup_pairs = 5 };
    expect_lookup(m_none, &pairs, ST(TOO_LARGE), "6 pairs");
}

static void test_request_check_generate_memory(void **state)
{
    (void)state;
    Ultrashard__Request r = ULTRASHARD__REQUEST__INIT;
    Ultrashard__GenerateRequest g = ULTRASHARD__GENERATE_REQUEST__INIT;
    us_err e = {0};
    r.version = 1;
    r.request_id = 7;
    r.body_case = ULTRASHARD__REQUEST__BODY_GENERATE;
    r.generate = &g;
    g.prompt.data = (uint8_t *)"hello";
    g.prompt.len = 5;
    g.max_tokens = 10;
    us_request_limits lim = { .max_request_tokens = 16 };
    assert_int_equal(us_request_check(&r, &lim, &e), ST(OK));   /* 1 + 5 + 10 = 16 */
    g.max_tokens = 11;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(TOO_LARGE));
    g.max_tokens = 1;
    g.temperature = -1.0f;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(BAD_REQUEST));
    g.temperature = 0.5f;
    g.top_p = 1.5f;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(BAD_REQUEST));
    g.top_p = 0.0f;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(OK));
    assert_false(us_request_idempotent(&r));

    Ultrashard__MemoryRequest m = ULTRASHARD__MEMORY_REQUEST__INIT;
    float q[6] = { 1, 2, 3, 4, 5, 6 };
    r.body_case = ULTRASHARD__REQUEST__BODY_MEMORY;
    r.memory = &m;
    m.table = "table_0";
    m.n_tokens = 2;
    m.dim = 3;
    m.n_queries = 6;
    m.queries = q;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(OK));
    assert_true(us_request_idempotent(&r));
    m.n_queries = 5;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(BAD_REQUEST));
    m.n_queries = 6;
    q[4] = 1.0f / 0.0f;
    assert_int_equal(us_request_check(&r, &lim, &e), ST(BAD_REQUEST));
    assert_non_null(strstr(e.msg, "query value 4"));
}

static void test_response_roundtrip_and_shapes(void **state)
{
    (void)state;
    float sums[2 * 1 * 3] = { 1, 2, 3, 4, 5, 6 };
    Ultrashard__LookupResponse l = ULTRASHARD__LOOKUP_RESPONSE__INIT;
    l.n_tokens = 2;
    l.n_groups = 1;
    l.dim = 3;
    l.n_sums = 6;
    l.sums = sums;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.version = 1;
    r.request_id = 9;
    r.body_case = ULTRASHARD__RESPONSE__BODY_LOOKUP;
    r.lookup = &l;
    uint8_t *buf;
    size_t len;
    us_err e = {0};
    Ultrashard__Response *got;
    assert_int_equal(us_frame_pack_response(&r, 0, &buf, &len, &e), US_OK);
    assert_int_equal(buf[0] | buf[1] << 8 | buf[2] << 16 | buf[3] << 24, len - 4);
    assert_int_equal(us_frame_unpack_response(buf + 4, len - 4, &got, &e), US_OK);
    assert_int_equal(got->request_id, 9);
    assert_memory_equal(got->lookup->sums, sums, sizeof sums);
    ultrashard__response__free_unpacked(got, NULL);
    free(buf);
    assert_int_equal(us_frame_pack_response(&r, 16, &buf, &len, &e), US_ERANGE);
    assert_null(buf);
    l.dim = 4;   /* 2 x 1 x 4 != 6 floats */
    assert_int_equal(us_frame_pack_response(&r, 0, &buf, &len, &e), US_OK);
    assert_int_equal(us_frame_unpack_response(buf + 4, len - 4, &got, &e), US_EPROTO);
    free(buf);
    l.dim = 3;
    r.version = 2;
    assert_int_equal(us_frame_pack_response(&r, 0, &buf, &len, &e), US_OK);
    assert_int_equal(us_frame_unpack_response(buf + 4, len - 4, &got, &e), US_EVERSION);
    free(buf);
    assert_string_equal(us_status_name(ST(BUSY)), "BUSY");
    assert_string_equal(us_status_name(99), "?");
    assert_int_equal(us_status_to_code(ST(NOT_FOUND)), US_ENOTFOUND);
    assert_int_equal(us_status_to_code(ST(OK)), US_OK);
}

static void test_token_file_and_address(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/token", us_test_tmpdir);
    FILE *f = fopen(path, "w");
    fputs("abc123\n", f);
    fclose(f);
    us_err e = {0};
    char *tok = NULL;
    chmod(path, 0644);
    assert_int_equal(us_client_read_token(path, &tok, &e), US_EINVAL);
    assert_non_null(strstr(e.msg, "chmod 600"));
    chmod(path, 0600);
    assert_int_equal(us_client_read_token(path, &tok, &e), US_OK);
    assert_string_equal(tok, "abc123");
    free(tok);
    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    assert_int_equal(us_client_read_token(path, &tok, &e), US_EINVAL);
    snprintf(path, sizeof path, "%s/missing", us_test_tmpdir);
    assert_int_equal(us_client_read_token(path, &tok, &e), US_EIO);
    char host[64];
    unsigned port;
    assert_int_equal(us_client_parse_address("127.0.0.1:8080", host, sizeof host, &port, &e),
                     US_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(us_client_parse_address("[::1]:9", host, sizeof host, &port, &e), US_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(us_client_parse_address("localhost", host, sizeof host, &port, &e), US_EINVAL);
    assert_int_equal(us_client_parse_address("h:0", host, sizeof host, &port, &e), US_EINVAL);
    assert_int_equal(us_client_parse_address("h:70000", host, sizeof host, &port, &e), US_EINVAL);
    assert_int_equal(us_client_parse_address(":80", host, sizeof host, &port, &e), US_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_byte_by_byte_and_bulk),
        cmocka_unit_test(test_reader_refuses_lengths),
        cmocka_unit_test(test_unpack_refuses_garbage),
        cmocka_unit_test(test_request_check_lookup),
        cmocka_unit_test(test_request_check_generate_memory),
        cmocka_unit_test(test_response_roundtrip_and_shapes),
        cmocka_unit_test(test_token_file_and_address),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
