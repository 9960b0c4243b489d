/* test_reshard.c — us_reshard: moved-block count equals the placement
 * difference, every row equal in the new store, refusals leave both stores. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "proto/placement.h"
#include "shard/reshard.h"
#include "shard/store.h"
#include "tests/unit/store_fixture.h"

#define tmpdir us_test_tmpdir

static void test_reshard_counts_and_rows(void **state)
{
    (void)state;
    us_err err = {0};
    us_table_layout tables[3] = {
        us_fixture_table(0, "a", 5000, 12, US_DTYPE_F32, 3),
        us_fixture_table(4, "q", 3000, 20, US_DTYPE_INT8, 4),
        us_fixture_table(2, "z", 1ull << 40, 32, US_DTYPE_BF16, 12),
    };
    tables[2].synthetic = true;
    char src[512], dst[512], dst2[512];
    snprintf(src, sizeof src, "%s/src", tmpdir);
    snprintf(dst, sizeof dst, "%s/dst", tmpdir);
    snprintf(dst2, sizeof dst2, "%s/dst2", tmpdir);
    assert_int_equal(us_fixture_build(src, tables, 3, 3), 0);

    us_reshard_stats st;
    if (us_reshard(src, dst, 5, &st, &err) != US_OK)
        fail_msg("%s", err.msg);
    uint64_t moved = 0, total = 0;
    for (int i = 0; i < 2; i++)
        for (uint64_t b = 0; b < tables[i].n_blocks; b++) {
            total++;
            moved += us_placement_shard(tables[i].table_id, b, 5, 3) !=
                     us_placement_shard(tables[i].table_id, b, 5, 5);
        }
    assert_int_equal(st.old_shards, 3);
    assert_int_equal(st.new_shards, 5);
    assert_int_equal(st.blocks_total, total);
    assert_int_equal(st.blocks_moved, moved);
    assert_int_equal(st.rows_checked, 5000 + 3000);
    assert_int_equal(st.rows_differ, 0);
    assert_true(st.old_digest == st.new_digest && st.old_digest != 0);

    /* every row (and int8 scale) of the new store, shard by shard, equals the old */
    us_store_opts all = { .backend = US_BACKEND_RAM, .shard_index = US_STORE_ALL_SHARDS };
    us_store *old, *neu;
    assert_int_equal(us_store_open(src, &all, &old, &err), US_OK);
    for (int shard = 0; shard < 5; shard++) {
        us_store_opts one = { .backend = US_BACKEND_RAM, .shard_index = shard, .expect_shards = 5 };
        assert_int_equal(us_store_open(dst, &one, &neu, &err), US_OK);
        assert_int_equal(us_store_manifest(neu)->n_tables, 3);
        for (size_t ti = 0; ti < 2; ti++)
            for (uint64_t r = 0; r < tables[ti].rows; r++) {
                if (!us_store_has_row(neu, ti, r))
                    continue;
                uint8_t a[64], b[64];
                float sa = 0, sb = 1;
                assert_int_equal(us_store_read_row(old, ti, r, a, &sa, &err), US_OK);
                assert_int_equal(us_store_read_row(neu, ti, r, b, &sb, &err), US_OK);
                assert_memory_equal(a, b, tables[ti].row_bytes);
                if (tables[ti].dtype == US_DTYPE_INT8)
                    assert_true(sa == sb);
            }
        us_store_close(neu);
    }
    us_store_close(old);

    /* refusals: existing destination, bad shard counts, missing source */
    assert_int_equal(us_reshard(src, dst, 2, &st, &err), US_EEXIST);
    assert_int_equal(us_reshard(src, dst2, 0, &st, &err), US_EINVAL);
    char nowhere[512];
    snprintf(nowhere, sizeof nowhere, "%s/nowhere", tmpdir);
    assert_int_equal(us_reshard(nowhere, dst2, 2, &st, &err), US_ENOTFOUND);
    struct stat sb;
    assert_int_not_equal(stat(dst2, &sb), 0);
    /* same shard count: nothing moves, still a full proof */
    assert_int_equal(us_reshard(dst, dst2, 5, &st, &err), US_OK);
    assert_int_equal(st.blocks_moved, 0);
    assert_int_equal(st.rows_differ, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshard_counts_and_rows),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
