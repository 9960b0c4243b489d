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
    assert_int_equal(us_rowcache_init(&c, 4 * (16 + US_ROWCACHE_SLOT_OVERHEAD), 16, &e), US_OK);
    assert_int_equal(c.n_slots, 4);
    assert_true(us_rowcache_bytes(&c) <= 4 * (16 + US_ROWCACHE_SLOT_OVERHEAD));
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
    assert_int_equal(us_rowcache_init(&c, 3 * (8 + US_ROWCACHE_SLOT_OVERHEAD), 8, &e), US_OK);
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
    assert_int_equal(us_rowcache_init(&c, 64 * (24 + US_ROWCACHE_SLOT_OVERHEAD), 24, &e), US_OK);
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

/* Admission: a row is admitted only once it was looked up before, and into
 * a full cache only when it is seen more often than the CLOCK victim. */
static void test_admission(void **state)
{
    (void)state;
    us_rowcache c;
    us_err e = {0};
    assert_int_equal(us_rowcache_init(&c, 2 * (8 + US_ROWCACHE_SLOT_OVERHEAD), 8, &e), US_OK);
    assert_int_equal(c.n_slots, 2);
    uint8_t row[8];
    fill(row, 5, 8);
    assert_null(us_rowcache_get(&c, 5, NULL));
    assert_false(us_rowcache_offer(&c, 5, row, 0));   /* seen once: not admitted */
    assert_null(us_rowcache_get(&c, 5, NULL));
    assert_true(us_rowcache_offer(&c, 5, row, 0));    /* seen twice */
    assert_non_null(us_rowcache_get(&c, 5, NULL));
    for (int i = 0; i < 3; i++)                       /* 6 is popular too */
        us_rowcache_get(&c, 6, NULL);
    fill(row, 6, 8);
    assert_true(us_rowcache_offer(&c, 6, row, 0));    /* a free slot */
    for (int i = 0; i < 2; i++)                       /* 7: seen twice, less than both */
        us_rowcache_get(&c, 7, NULL);
    fill(row, 7, 8);
    assert_false(us_rowcache_offer(&c, 7, row, 0));
    assert_int_equal(c.evictions, 0);
    for (int i = 0; i < 8; i++)                       /* now 7 is the hottest */
        us_rowcache_get(&c, 7, NULL);
    assert_true(us_rowcache_offer(&c, 7, row, 0));
    assert_int_equal(c.evictions, 1);
    const uint8_t *got = us_rowcache_get(&c, 7, NULL);
    assert_non_null(got);
    assert_memory_equal(got, row, 8);
    assert_int_equal(c.rejected, 2);
    us_rowcache_free(&c);
}

/* get_many is the same sequence of lookups as get, one by one. */
static void test_get_many(void **state)
{
    (void)state;
    us_rowcache a, b;
    us_err e = {0};
    assert_int_equal(us_rowcache_init(&a, 16 * (8 + US_ROWCACHE_SLOT_OVERHEAD), 8, &e), US_OK);
    assert_int_equal(us_rowcache_init(&b, 16 * (8 + US_ROWCACHE_SLOT_OVERHEAD), 8, &e), US_OK);
    uint8_t row[8];
    for (uint64_t id = 0; id < 40; id += 3) {
        fill(row, id, 8);
        us_rowcache_put(&a, id, row, (float)id);
        us_rowcache_put(&b, id, row, (float)id);
    }
    uint64_t ids[50];
    const uint8_t *got[50];
    const float *sc[50];
    for (uint64_t i = 0; i < 50; i++)
        ids[i] = (i * 7) % 45;
    uint64_t hits = us_rowcache_get_many(&a, ids, 50, got, sc);
    uint64_t want_hits = 0;
    for (uint64_t i = 0; i < 50; i++) {
        const float *s = NULL;
        const uint8_t *one = us_rowcache_get(&b, ids[i], &s);
        want_hits += one != NULL;
        assert_int_equal(got[i] != NULL, one != NULL);
        if (one) {
            assert_memory_equal(got[i], one, 8);
            assert_true(*sc[i] == *s);
        }
    }
    assert_int_equal(hits, want_hits);
    assert_int_equal(a.hits, b.hits);
    assert_int_equal(a.misses, b.misses);
    us_rowcache_free(&a);
    us_rowcache_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_second_chance),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_get_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
