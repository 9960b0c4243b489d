/* test_synth_serve.c — a shard computing synthetic rows on the fly
 * (us_server_init_synth) answers byte for byte what a shard over the
 * materialised synth_view of the same table answers; and a 1e11-value table
 * is served without materialising it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/hash.h"
#include "shard/serve.h"
#include "shard/synth_view.h"
#include "shard/synthetic.h"

enum { N_SHARDS = 3, TOKENS = 7, K = 6, MAX_ROWS = TOKENS * K };

/* A PUSH (with 3 IVE groups) or ROWS request of up to TOKENS x K pairs over
 * rows held by shard `shard` (drawn with seed), written to b. */
static uint64_t build(us_wire_buf *b, const us_synth_source *held, uint8_t mode,
                      uint64_t seed)
{
    uint64_t rows[MAX_ROWS], s = seed;
    uint32_t n_rows = 0;
    while (n_rows < MAX_ROWS / 2) {   /* distinct held rows */
        uint64_t r = us_splitmix64_next(&s) % held->spec.rows;
        bool dup = false;
        for (uint32_t i = 0; i < n_rows; i++)
            dup |= rows[i] == r;
        if (!dup && us_synth_source_holds(held, r))
            rows[n_rows++] = r;
    }
    bool push = mode == US_WIRE_PUSH;
    uint32_t n_pairs = push ? TOKENS * K : 0;
    uint64_t len = us_wire_req_bytes(n_rows, n_pairs, push), at;
    us_wire_req r;
    us_err e;
    b->len = 0;
    assert_int_equal(us_wire_buf_append(b, len, &at, &e), US_OK);
    us_wire_req_desc d = { .mode = mode, .flags = push ? US_WIRE_F_GROUPS : 0,
                           .table_id = held->spec.table_id, .batch_id = seed,
                           .n_tokens = push ? TOKENS : 0, .n_rows = n_rows,
                           .n_pairs = n_pairs, .n_groups = 3 };
    assert_int_equal(us_wire_req_init(b->data, len, &d, &r, &e), US_OK);
    memcpy((void *)r.rows, rows, n_rows * sizeof *rows);
    for (uint32_t p = 0; p < n_pairs; p++) {
        uint64_t x = us_splitmix64_next(&s);
        ((uint32_t *)r.pair_token)[p] = p / K;
        ((uint32_t *)r.pair_ref)[p] = (uint32_t)(x % n_rows);
        ((float *)r.pair_weight)[p] = (float)((x >> 40) * 0x1p-24) - 0.5f;
        ((uint8_t *)r.pair_group)[p] = (uint8_t)((x >> 20) % 3);
    }
    return len;
}

/* Both servers answer the same requests with the same bytes. */
static void same_answers(us_dtype dtype, bool column)
{
    for (int shard = 0; shard < N_SHARDS; shard++) {
        us_synth_spec spec = { .dtype = dtype, .synth_seed = 42, .table_id = 5,
                               .rows = 3000, .dim = 40, .block_bits = 6,
                               .placement_seed = 7, .column = column,
                               .n_shards = N_SHARDS, .shard_index = shard };
        us_synth_view sv;
        us_synth_source src;
        us_server mat, fly;
        us_err e = {0};
        assert_int_equal(us_synth_view_build(&sv, &spec, &e), US_OK);
        assert_int_equal(us_synth_source_init(&src, &spec, &e), US_OK);
        assert_int_equal(src.cols, sv.view.dim);
        assert_int_equal(us_server_init(&mat, 5, shard, &sv.view, NULL, 1, &e), US_OK);
        assert_int_equal(us_server_init_synth(&fly, shard, &src, NULL, 1, &e), US_OK);
        us_wire_buf req = {0}, a = {0}, b = {0};
        for (int i = 0; i < 8; i++) {
            uint8_t mode = i % 2 ? US_WIRE_ROWS : US_WIRE_PUSH;
            uint64_t len = build(&req, &src, mode, 100u * (uint64_t)shard + (uint64_t)i);
            bool rej_a = true, rej_b = true;
            a.len = b.len = 0;
            assert_int_equal(us_serve_request(&mat, req.data, len, 0, &a, &rej_a, NULL, &e),
                             US_OK);
            assert_int_equal(us_serve_request(&fly, req.data, len, 0, &b, &rej_b, NULL, &e),
                             US_OK);
            assert_false(rej_a);
            assert_false(rej_b);
            assert_int_equal(a.len, b.len);
            assert_memory_equal(a.data, b.data, a.len);
        }
        us_wire_buf_free(&req);
        us_wire_buf_free(&a);
        us_wire_buf_free(&b);
        us_server_free(&mat);
        us_server_free(&fly);
        us_synth_source_free(&src);
        us_synth_view_free(&sv);
    }
}

static void test_same_f32_row(void **state) { (void)state; same_answers(US_DTYPE_F32, false); }
static void test_same_bf16_row(void **state) { (void)state; same_answers(US_DTYPE_BF16, false); }
static void test_same_int8_row(void **state) { (void)state; same_answers(US_DTYPE_INT8, false); }
static void test_same_f16_column(void **state) { (void)state; same_answers(US_DTYPE_F16, true); }
static void test_same_int8_column(void **state) { (void)state; same_answers(US_DTYPE_INT8, true); }

/* Rows of another shard and beyond the table are refused by the synthetic
 * server too, naming the reason. */
static void test_refuses(void **state)
{
    (void)state;
    us_synth_spec spec = { .dtype = US_DTYPE_F32, .synth_seed = 1, .table_id = 5,
                           .rows = 3000, .dim = 8, .block_bits = 6, .placement_seed = 7,
                           .n_shards = N_SHARDS, .shard_index = 1 };
    us_synth_source src;
    us_server fly;
    us_err e = {0};
    assert_int_equal(us_synth_source_init(&src, &spec, &e), US_OK);
    assert_int_equal(us_server_init_synth(&fly, 1, &src, NULL, 1, &e), US_OK);
    uint64_t foreign = 0;
    while (us_synth_source_holds(&src, foreign))
        foreign += 64;
    uint64_t bad[2] = { foreign, 3000 };
    int want[2] = { US_ENOTFOUND, US_ERANGE };
    for (int i = 0; i < 2; i++) {
        us_wire_buf req = {0}, out = {0};
        uint64_t len = us_wire_req_bytes(1, 0, 0), at;
        us_wire_req r;
        assert_int_equal(us_wire_buf_append(&req, len, &at, &e), US_OK);
        us_wire_req_desc d = { .mode = US_WIRE_ROWS, .table_id = 5, .batch_id = 1,
                               .n_rows = 1, .n_groups = 1 };
        assert_int_equal(us_wire_req_init(req.data, len, &d, &r, &e), US_OK);
        memcpy((void *)r.rows, &bad[i], sizeof bad[i]);
        bool rejected = false;
        assert_int_equal(us_serve_request(&fly, req.data, len, 0, &out, &rejected, NULL, &e),
                         US_OK);
        assert_true(rejected);
        assert_int_equal(fly.last_error.code, want[i]);
        us_wire_buf_free(&req);
        us_wire_buf_free(&out);
    }
    us_server_free(&fly);
    us_synth_source_free(&src);
    assert_int_equal(us_synth_source_init(&src, &(us_synth_spec){ .dtype = US_DTYPE_F32,
        .rows = 10, .dim = 0, .n_shards = 1 }, &e), US_EINVAL);
    assert_int_equal(us_server_init_synth(&fly, 0, NULL, NULL, 1, &e), US_EINVAL);
}

/* 1e11 bf16 values (390,625,000 rows x 256) on one of 8 shards: the source
 * holds one byte per block, and a ROWS answer for the table's last row
 * carries exactly us_synth_row's bytes. */
static void test_1e11_values(void **state)
{
    (void)state;
    us_synth_spec spec = { .dtype = US_DTYPE_BF16, .synth_seed = 42, .table_id = 1,
                           .rows = 390625000ull, .dim = 256, .block_bits = 12,
                           .placement_seed = 7, .n_shards = 8, .shard_index = 0 };
    us_err e = {0};
    us_synth_source probe;
    assert_int_equal(us_synth_source_init(&probe, &spec, &e), US_OK);
    assert_int_equal(probe.n_blocks, 95368);
    uint64_t last = spec.rows - 1;
    spec.shard_index = -1;   /* find its owner: the whole table holds every block */
    for (int s = 0; s < 8; s++) {
        spec.shard_index = s;
        us_synth_source_free(&probe);
        assert_int_equal(us_synth_source_init(&probe, &spec, &e), US_OK);
        if (us_synth_source_holds(&probe, last))
            break;
    }
    assert_true(us_synth_source_holds(&probe, last));
    us_server fly;
    assert_int_equal(us_server_init_synth(&fly, spec.shard_index, &probe, NULL, 1, &e), US_OK);
    us_wire_buf req = {0}, out = {0};
    uint64_t len = us_wire_req_bytes(1, 0, 0), at;
    us_wire_req r;
    assert_int_equal(us_wire_buf_append(&req, len, &at, &e), US_OK);
    us_wire_req_desc d = { .mode = US_WIRE_ROWS, .table_id = 1, .batch_id = 3, .n_rows = 1,
                           .n_groups = 1 };
    assert_int_equal(us_wire_req_init(req.data, len, &d, &r, &e), US_OK);
    memcpy((void *)r.rows, &last, sizeof last);
    assert_int_equal(us_serve_request(&fly, req.data, len, 0, &out, NULL, NULL, &e), US_OK);
    us_wire_resp a;
    assert_int_equal(us_wire_resp_parse(out.data, out.len, &(us_wire_resp_expect){
        (const us_wire_req_hdr *)req.data, 256, 2, 0 }, &a, &e), US_OK);
    assert_int_equal(a.hdr->status, US_OK);
    uint16_t want[256];
    assert_int_equal(us_synth_row(want, NULL, US_DTYPE_BF16, 42, 1, last, 256, &e), US_OK);
    assert_memory_equal(a.row_bytes, want, sizeof want);
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
    us_server_free(&fly);
    us_synth_source_free(&probe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_f32_row),
        cmocka_unit_test(test_same_bf16_row),
        cmocka_unit_test(test_same_int8_row),
        cmocka_unit_test(test_same_f16_column),
        cmocka_unit_test(test_same_int8_column),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_1e11_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
