/* test_readplan.c — coalesced one-sided reads (coordinator/lookup/readplan.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/lookup/readplan.h"

static void test_spans(void **state)
{
    (void)state;
    us_read_plan p = {0};
    us_err e = {0};
    /* block_bits 4 (16 rows), stride 32, 20 bytes per row, gap <= 64 bytes
     * (2 rows) is read through */
    uint64_t rows[] = { 5, 3, 4, 7, 12, 15, 16, 40, 3 + 64, 100 };
    int32_t owner[] = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 };
    bool skip[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    uint64_t stride[2] = { 32, 48 };
    us_read_plan_input in = { .rows = rows, .owner = owner, .skip = skip, .n = 10,
                              .block_bits = 4, .n_shards = 2, .stride = stride,
                              .row_bytes = 20, .gap_bytes = 64 };
    assert_int_equal(us_read_plan_build(&p, &in, &e), US_OK);
    /* shard 0: {3,4,5,7} (gap of one row), {12,15} (gap 2 rows = 64 B), {16}
     * (next block), {40}; shard 1: {67} */
    assert_int_equal(p.n_spans, 5);
    us_read_span want[5] = {
        { 0, 0, 3, 5, 4 * 32 + 20, 0 }, { 0, 0, 12, 4, 3 * 32 + 20, 0 },
        { 0, 1, 0, 1, 20, 0 }, { 0, 2, 8, 1, 20, 0 }, { 1, 4, 3, 1, 20, 0 },
    };
    uint64_t off = 0, total = 0;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p.spans[i].shard, want[i].shard);
        assert_int_equal(p.spans[i].block, want[i].block);
        assert_int_equal(p.spans[i].first, want[i].first);
        assert_int_equal(p.spans[i].n_rows, want[i].n_rows);
        assert_int_equal(p.spans[i].bytes, want[i].bytes);
        assert_int_equal(p.spans[i].dst_off, off);
        off = (off + p.spans[i].bytes + 7) & ~7ull;
        total += p.spans[i].bytes;
    }
    assert_int_equal(p.landing_bytes, off);
    assert_int_equal(p.bytes_read, total);
    /* each row lands at its span's offset plus its distance in strides */
    for (int i = 0; i < 9; i++) {
        const us_read_span *sp = &p.spans[p.row_span[i]];
        uint64_t in_block = rows[i] & 15;
        assert_int_equal(p.row_off[i], sp->dst_off + (in_block - sp->first) *
                                           stride[owner[i]]);
    }
    assert_int_equal(p.row_off[9], UINT64_MAX);

    /* gap 0: only exactly adjacent rows merge */
    in.gap_bytes = 0;
    assert_int_equal(us_read_plan_build(&p, &in, &e), US_OK);
    assert_int_equal(p.n_spans, 7);   /* {3,4,5} {7} {12} {15} {16} {40} {67} */
    /* bad inputs */
    owner[0] = 2;
    in.skip = NULL;
    assert_int_equal(us_read_plan_build(&p, &in, &e), US_EINVAL);
    owner[0] = 0;
    stride[1] = 8;
    assert_int_equal(us_read_plan_build(&p, &in, &e), US_EINVAL);
    us_read_plan_free(&p);
}

/* Random sets: every row covered exactly once, spans disjoint and within a
 * block, never more spans than rows. */
static void test_random(void **state)
{
    (void)state;
    enum { N = 3000 };
    uint64_t *rows = malloc(N * sizeof *rows);
    int32_t *owner = malloc(N * sizeof *owner);
    uint64_t stride[3] = { 64, 64, 80 }, s = 7;
    us_read_plan p = {0};
    us_err e = {0};
    for (int round = 0; round < 20; round++) {
        uint64_t n = 0;
        for (uint64_t r = 0; r < 200000 && n < N; r++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            if ((s >> 33) % 50 == 0) {
                rows[n] = r;
                owner[n] = (int32_t)((r >> 10) % 3);
                n++;
            }
        }
        us_read_plan_input in = { .rows = rows, .owner = owner, .n = n, .block_bits = 10,
                                  .n_shards = 3, .stride = stride, .row_bytes = 60,
                                  .gap_bytes = (uint64_t)round * 40 };
        assert_int_equal(us_read_plan_build(&p, &in, &e), US_OK);
        assert_true(p.n_spans <= n);
        for (uint64_t i = 0; i < n; i++) {
            const us_read_span *sp = &p.spans[p.row_span[i]];
            assert_int_equal(sp->shard, owner[i]);
            assert_int_equal(sp->block, rows[i] >> 10);
            uint64_t in_block = rows[i] & 1023;
            assert_true(in_block >= sp->first && in_block < sp->first + sp->n_rows);
            assert_true(sp->first + sp->n_rows <= 1024);
            assert_int_equal(p.row_off[i],
                             sp->dst_off + (in_block - sp->first) * stride[owner[i]]);
            assert_true(p.row_off[i] + 60 <= sp->dst_off + sp->bytes);
        }
        for (uint64_t k = 1; k < p.n_spans; k++)
            assert_true(p.spans[k].dst_off >= p.spans[k - 1].dst_off + p.spans[k - 1].bytes);
    }
    us_read_plan_free(&p);
    free(rows);
    free(owner);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
