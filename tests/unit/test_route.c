/* test_route.c — dedupe, placement routing, request encoding, cost model,
 * column slices (coordinator/lookup/route.h, proto/column.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/lookup/route.h"
#include "proto/placement.h"

static const us_table_info TABLE = {
    .table_id = 3, .rows = 100000, .dim = 64, .dtype = US_DTYPE_F32, .block_bits = 4,
    .placement_seed = 77, .placement = US_PLACE_ROW,
};

static void test_dedupe(void **state)
{
    (void)state;
    us_route r = {0};
    us_err e = {0};
    uint64_t rows[12] = { 5, 9, 5, 70000, 9, 9, 1, 5, 70000, 2, 3, 1 };
    assert_int_equal(us_route_dedupe(&r, &TABLE, rows, 4, 3, &e), US_OK);
    assert_int_equal(r.n_unique, 6);
    uint64_t want[6] = { 5, 9, 70000, 1, 2, 3 };   /* first-seen order */
    assert_memory_equal(r.uniq_rows, want, sizeof want);
    for (int p = 0; p < 12; p++)
        assert_int_equal(r.uniq_rows[r.pair_uidx[p]], rows[p]);
    rows[7] = 100000;
    assert_int_equal(us_route_dedupe(&r, &TABLE, rows, 4, 3, &e), US_ERANGE);
    assert_non_null(strstr(e.msg, "token 2 pair 1: row 100000"));
    /* many distinct rows: the hash table grows and stays exact */
    uint64_t *big = malloc(5000 * sizeof *big);
    for (int i = 0; i < 5000; i++)
        big[i] = (uint64_t)(i % 1700) * 37 % 100000;
    assert_int_equal(us_route_dedupe(&r, &TABLE, big, 100, 50, &e), US_OK);
    assert_int_equal(r.n_unique, 1700);
    for (int p = 0; p < 5000; p++)
        assert_int_equal(r.uniq_rows[r.pair_uidx[p]], big[p]);
    free(big);
    us_route_free(&r);
}

/* Encoded requests, decoded back, give exactly the batch's pairs per owner. */
static void check_encoding(const us_table_info *t, int S, const bool *local)
{
    enum { T = 37, K = 6 };
    uint64_t rows[T * K];
    float w[T * K];
    uint8_t g[T * K];
    uint64_t s = 99;
    for (int p = 0; p < T * K; p++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        rows[p] = (s >> 33) % 300 * 13;        /* duplicates likely */
        w[p] = (float)p * 0.25f - 3;
        g[p] = (uint8_t)(p % 3);
    }
    us_route r = {0};
    us_wire_buf buf = {0};
    us_err e = {0};
    uint64_t off[8], len[8];
    assert_int_equal(us_route_dedupe(&r, t, rows, T, K, &e), US_OK);
    bool *loc = NULL;
    if (local) {
        loc = calloc(r.n_unique, 1);
        for (uint32_t u = 0; u < r.n_unique; u++)
            loc[u] = r.uniq_rows[u] % 2 == 0;   /* pretend even rows are cached */
    }
    assert_int_equal(us_route_assign(&r, t, S, loc, &e), US_OK);
    us_route_request q = { .mode = US_WIRE_PUSH, .batch_id = 5, .weights = w, .groups = g,
                           .n_groups = 3 };
    assert_int_equal(us_route_encode(&r, t, &q, &buf, off, len, &e), US_OK);
    int seen[T * K];
    memset(seen, 0, sizeof seen);
    for (int sh = 0; sh < S; sh++) {
        us_wire_req q;
        assert_int_equal(us_wire_req_parse(buf.data + off[sh], len[sh], NULL, &q, &e), US_OK);
        assert_int_equal(q.hdr->n_tokens, r.shard_tokens[sh]);
        for (uint32_t i = 0; i < q.hdr->n_rows; i++) {
            uint64_t row = q.rows[i];
            if (t->placement == US_PLACE_ROW)
                assert_int_equal(us_placement_shard(t->table_id, row >> t->block_bits,
                                                    t->placement_seed, S), sh);
        }
        for (uint32_t p = 0; p < q.hdr->n_pairs; p++) {
            uint32_t tok = r.tok_map[r.tok_off[sh] + q.pair_token[p]];
            uint64_t row = q.rows[q.pair_ref[p]];
            /* find the batch pair it came from: same token, row, weight, group */
            int found = -1;
            for (int i = 0; i < K; i++) {
                int bp = (int)tok * K + i;
                if (rows[bp] == row && w[bp] == q.pair_weight[p] && g[bp] == q.pair_group[p]) {
                    found = bp;
                    break;
                }
            }
            assert_true(found >= 0);
            seen[found]++;
        }
    }
    for (int p = 0; p < T * K; p++) {
        bool is_local = loc && rows[p] % 2 == 0;
        int want = is_local ? 0 : (t->placement == US_PLACE_COLUMN ? S : 1);
        assert_int_equal(seen[p], want);
    }
    free(loc);
    us_wire_buf_free(&buf);
    us_route_free(&r);
}

static void test_encode_row_placement(void **state)
{
    (void)state;
    for (int S = 1; S <= 8; S++)
        check_encoding(&TABLE, S, NULL);
    check_encoding(&TABLE, 5, (bool[]){ 1 });
}

static void test_encode_column_placement(void **state)
{
    (void)state;
    us_table_info t = TABLE;
    t.placement = US_PLACE_COLUMN;
    check_encoding(&t, 1, NULL);
    check_encoding(&t, 3, NULL);
    check_encoding(&t, 4, (bool[]){ 1 });
}

/* A shard with nothing to do gets a NOP; STOP is carried by every request;
 * ROWS requests list only rows; no groups array without groups. */
static void test_encode_modes(void **state)
{
    (void)state;
    us_route r = {0};
    us_wire_buf buf = {0};
    us_err e = {0};
    uint64_t off[4], len[4];
    /* all rows in block 0: one owner among 4 shards */
    uint64_t rows[6] = { 1, 2, 3, 1, 2, 3 };
    float w[6] = { 1, 2, 3, 4, 5, 6 };
    assert_int_equal(us_route_dedupe(&r, &TABLE, rows, 2, 3, &e), US_OK);
    assert_int_equal(us_route_assign(&r, &TABLE, 4, NULL, &e), US_OK);
    int owner = us_placement_shard(TABLE.table_id, 0, TABLE.placement_seed, 4);
    us_route_request push = { .mode = US_WIRE_PUSH, .flags = US_WIRE_F_STOP, .batch_id = 1,
                              .weights = w, .n_groups = 1 };
    assert_int_equal(us_route_encode(&r, &TABLE, &push, &buf, off, len, &e), US_OK);
    for (int s = 0; s < 4; s++) {
        us_wire_req q;
        assert_int_equal(us_wire_req_parse(buf.data + off[s], len[s], NULL, &q, &e), US_OK);
        assert_true(q.hdr->flags & US_WIRE_F_STOP);
        assert_null(q.pair_group);
        if (s == owner) {
            assert_int_equal(q.hdr->mode, US_WIRE_PUSH);
            assert_int_equal(q.hdr->n_rows, 3);
            assert_int_equal(q.hdr->n_pairs, 6);
            assert_int_equal(q.hdr->n_tokens, 2);
        } else {
            assert_int_equal(q.hdr->mode, US_WIRE_NOP);
            assert_int_equal(len[s], 48);
        }
    }
    buf.len = 0;
    us_route_request rows_req = { .mode = US_WIRE_ROWS, .batch_id = 2, .weights = w,
                                  .n_groups = 1 };
    assert_int_equal(us_route_encode(&r, &TABLE, &rows_req, &buf, off, len, &e), US_OK);
    us_wire_req q;
    assert_int_equal(us_wire_req_parse(buf.data + off[owner], len[owner], NULL, &q, &e),
                     US_OK);
    assert_int_equal(q.hdr->mode, US_WIRE_ROWS);
    assert_int_equal(q.hdr->n_pairs, 0);
    assert_int_equal(q.hdr->n_rows, 3);
    assert_int_equal(q.rows[0], 1);
    assert_int_equal(q.rows[2], 3);
    us_wire_buf_free(&buf);
    us_route_free(&r);
}

static void test_column_slice(void **state)
{
    (void)state;
    for (uint32_t dim = 1; dim < 40; dim++)
        for (int S = 1; S <= (int)dim && S <= 9; S++) {
            uint32_t next = 0;
            for (int s = 0; s < S; s++) {
                uint32_t b, c;
                us_column_slice(dim, S, s, &b, &c);
                assert_int_equal(b, next);
                assert_true(c == dim / S || c == dim / S + 1);
                next = b + c;
            }
            assert_int_equal(next, dim);
        }
}

static void test_cost_model(void **state)
{
    (void)state;
    us_cost_params p = { .bytes_per_us = 1000, .msg_us = 20, .read_us = 2 };
    us_route r = {0};
    us_err e = {0};
    us_cost push, pull;
    /* 1 token, 1 row, 2 shards, f32 dim 64: exact counts */
    uint64_t one = 17;
    assert_int_equal(us_route_dedupe(&r, &TABLE, &one, 1, 1, &e), US_OK);
    assert_int_equal(us_route_assign(&r, &TABLE, 2, NULL, &e), US_OK);
    us_route_cost(&r, &TABLE, 1, true, &p, &push, &pull);
    /* push: 2 request headers + 1 row id + 1 pair (12 B, padded) + 2 answer
     * headers + one token's 64 floats */
    assert_int_equal(push.bytes, 48 + 48 + 8 + 16 + 48 + 48 + 256);
    assert_int_equal(push.messages, 4);
    /* pull by RMA: NOP round (4 headers) + one row */
    assert_int_equal(pull.bytes, 4 * 48 + 256);
    assert_int_equal(pull.messages, 4 + 1);
    assert_true(pull.est_us == (4 * 48 + 256) / 1000.0 + 4 * 20 + 2);

    /* 64 tokens all reading the same 4 rows: pull moves 4 rows, push 64 sums */
    uint64_t hot[64 * 4];
    for (int i = 0; i < 256; i++)
        hot[i] = (uint64_t)(i % 4) * 1000;
    assert_int_equal(us_route_dedupe(&r, &TABLE, hot, 64, 4, &e), US_OK);
    assert_int_equal(us_route_assign(&r, &TABLE, 4, NULL, &e), US_OK);
    us_route_cost(&r, &TABLE, 1, true, &p, &push, &pull);
    assert_true(pull.bytes < push.bytes);
    assert_true(pull.est_us < push.est_us);
    /* 8 tokens each with 32 distinct rows: push sends 8 sums, pull 256 rows */
    uint64_t spread[8 * 32];
    for (int i = 0; i < 256; i++)
        spread[i] = (uint64_t)i * 331;
    assert_int_equal(us_route_dedupe(&r, &TABLE, spread, 8, 32, &e), US_OK);
    assert_int_equal(us_route_assign(&r, &TABLE, 4, NULL, &e), US_OK);
    us_route_cost(&r, &TABLE, 1, true, &p, &push, &pull);
    assert_true(push.bytes < pull.bytes);
    assert_true(push.est_us < pull.est_us);
    assert_int_equal(pull.messages, 8 + 256);
    /* pull by messages: no per-row reads */
    us_route_cost(&r, &TABLE, 1, false, &p, &push, &pull);
    assert_int_equal(pull.messages, 8);
    us_route_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_encode_row_placement),
        cmocka_unit_test(test_encode_column_placement),
        cmocka_unit_test(test_encode_modes),
        cmocka_unit_test(test_column_slice),
        cmocka_unit_test(test_cost_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
