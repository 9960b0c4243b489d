/*
 * test_store_gather.c — the store's views drive the gather kernel: per shard,
 * RAM and mmap, every dtype, us_gather_sum over us_store_view equals a
 * reference built from us_store_read_row with the kernel's exact numerics
 * (fmaf in pair order; int8: weight * scale, then x = q). Rows of other
 * shards are refused by the kernel (NULL blocks).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "kernels/gather.h"
#include "proto/placement.h"
#include "shard/rowcodec.h"
#include "shard/store.h"
#include "tests/unit/store_fixture.h"

#define tmpdir us_test_tmpdir

static float element(const uint8_t *row, us_dtype dt, uint32_t c)
{
    float f;
    us_row_decode_f32(&f, dt == US_DTYPE_INT8 ? row + c : row + c * us_dtype_size(dt), dt,
                      1.0f, 1);
    return f;
}

static void test_gather_over_store_views(void **state)
{
    (void)state;
    enum { SHARDS = 3, TOKENS = 7, K = 9 };
    us_table_layout tables[4] = {
        us_fixture_table(0, "f32", 3000, 40, US_DTYPE_F32, 6),
        us_fixture_table(1, "bf16", 2000, 64, US_DTYPE_BF16, 5),
        us_fixture_table(2, "f16", 1000, 17, US_DTYPE_F16, 7),
        us_fixture_table(3, "int8", 2500, 48, US_DTYPE_INT8, 6),
    };
    char dir[512];
    snprintf(dir, sizeof dir, "%s/st", tmpdir);
    assert_int_equal(us_fixture_build(dir, tables, 4, SHARDS), 0);
    us_err err = {0};
    uint64_t x = 0x1234567;
    for (int backend = 0; backend < 2; backend++)
        for (int shard = 0; shard < SHARDS; shard++) {
            us_store_opts o = { .backend = (us_backend)backend, .shard_index = shard,
                                .expect_shards = SHARDS };
            us_store *st;
            assert_int_equal(us_store_open(dir, &o, &st, &err), US_OK);
            for (size_t ti = 0; ti < 4; ti++) {
                const us_table_layout *t = &us_store_manifest(st)->tables[ti];
                us_rows_view v;
                assert_int_equal(us_store_view(st, ti, &v, &err), US_OK);
                assert_int_equal(us_rows_view_check(&v, &err), US_OK);
                /* TOKENS x K local rows (with repeats), random weights */
                uint64_t rows[TOKENS * K];
                float w[TOKENS * K], out[TOKENS * 64], want[TOKENS * 64];
                for (int i = 0; i < TOKENS * K; i++) {
                    uint64_t r;
                    do {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        r = x % t->rows;
                    } while (!us_store_has_row(st, ti, r));
                    rows[i] = i % 5 == 4 ? rows[i - 1] : r;
                    w[i] = (float)((x >> 20) % 1000) / 500.0f - 1.0f;
                }
                for (int tok = 0; tok < TOKENS; tok++)
                    for (uint32_t c = 0; c < t->dim; c++) {
                        float acc = 0.0f;
                        for (int i = 0; i < K; i++) {
                            uint8_t row[256];
                            float scale = 1.0f;
                            int p = tok * K + i;
                            assert_int_equal(us_store_read_row(st, ti, rows[p], row, &scale, &err),
                                             US_OK);
                            if (w[p] == 0.0f)
                                continue;
                            float wi = t->dtype == US_DTYPE_INT8 ? w[p] * scale : w[p];
                            acc = fmaf(wi, element(row, t->dtype, c), acc);
                        }
                        want[tok * t->dim + c] = acc;
                    }
                assert_int_equal(us_gather_sum(out, &v, rows, w, TOKENS, K, 1, &err), US_OK);
                for (uint32_t i = 0; i < TOKENS * t->dim; i++)
                    if (out[i] != want[i])
                        fail_msg("backend %d shard %d table %s: out[%u] %g != %g", backend,
                                 shard, t->name, i, out[i], want[i]);
                /* a row of another shard: the kernel reports it, out unchanged */
                uint64_t foreign = 0;
                while (us_store_has_row(st, ti, foreign))
                    foreign += t->rows_per_block;
                rows[3] = foreign;
                float keep = out[0];
                assert_int_equal(us_gather_sum(out, &v, rows, w, TOKENS, K, 1, &err),
                                 US_ENOTFOUND);
                assert_true(out[0] == keep);
            }
            us_store_close(st);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_over_store_views),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
