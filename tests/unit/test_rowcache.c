/* test_rowcache.c — bounded CLOCK cache of rows (coordinator/lookup/rowcache.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/lookup/rowcache.h"

static void fill(uint8_t *row, uint64_t id, size_t n)
{
    for (size_t i = 0; i < n; i++)
        row[i] = (uint8_t)(id * 31 + i);
}

static void test_basic(void **state)
{
    (void)state;
    us_rowcache c;
    us_err e = {0};
    assert_int_equal(us_rowcache_init(&c, 10, 16, &e), US_EINVAL);
    assert_int_equal(us_rowcache_init(&c, 4 * (16 + 30), 16, &e), US_OK);
    assert_int_equal(c.n_slots, 4);
    assert_true(us_rowcache_bytes(&c) <= 4 * (16 + 30));
    uint8_t row[16];
    const float *scale = NULL;
    assert_null(us_rowcache_get(&c, 7, &scale));
    fill(row, 7, 16);
    us_rowcache_put(&c, 7, row, 0.25f);
    const uint8_t *got = us_rowcache_get(&c, 7, &scale);
    assert_non_null(got);
    assert_memory_equal(got, row, 16);
    assert_true(*scale == 0.25f);
    assert_int_equal(c.hits, 1);
    assert_int_equal(c.misses, 1);
    us_rowcache_free(&c);
}

/* CLOCK: a row hit since the last sweep survives the next eviction. */
static void test_second_chance(void **state)
{
    (void)state;
    us_rowcache c;
    us_err e = {0};
    assert_int_equal(us_rowcache_init(&c, 3 * (8 + 30), 8, &e), US_OK);
    assert_int_equal(c.n_slots, 3);
    uint8_t row[8];
    for (uint64_t id = 1; id <= 3; id++) {
        fill(row, id, 8);
        us_rowcache_put(&c, id, row, 0);
    }
    assert_non_null(us_rowcache_get(&c, 1, NULL));   /* 1 referenced */
    fill(row, 4, 8);
    us_rowcache_put(&c, 4, row, 0);                  /* evicts 2, not 1 */
    assert_non_null(us_rowcache_get(&c, 1, NULL));
    assert_null(us_rowcache_get(&c, 2, NULL));
    assert_non_null(us_rowcache_get(&c, 3, NULL));
    assert_non_null(us_rowcache_get(&c, 4, NULL));
    assert_int_equal(c.evictions, 1);
    us_rowcache_free(&c);
}

/* Against a model: after any sequence of puts and gets, every row the cache
 * returns has its own bytes, and it holds at most n_slots rows. */
static void test_model(void **state)
{
    (void)state;
    us_rowcache c;
    us_err e = {0};
    assert_int_equal(us_rowcache_init(&c, 64 * (24 + 30), 24, &e), US_OK);
    uint8_t row[24], want[24];
    uint64_t s = 1;
    for (int it = 0; it < 50000; it++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t id = (s >> 33) % 200;
        const uint8_t *got = us_rowcache_get(&c, id, NULL);
        if (got) {
            fill(want, id, 24);
            assert_memory_equal(got, want, 24);
        } else {
            fill(row, id, 24);
            us_rowcache_put(&c, id, row, 0);
        }
    }
    uint64_t present = 0;
    for (uint64_t id = 0; id < 200; id++)
        present += us_rowcache_get(&c, id, NULL) != NULL;
    assert_int_equal(present, c.n_slots);
    assert_true(c.hits > 0 && c.evictions > 0);
    us_rowcache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_second_chance),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
