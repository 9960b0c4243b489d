/* test_cachegate.c — the row cache's measured on/off gate (coordinator/lookup/cachegate.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "coordinator/lookup/cachegate.h"

/* Runs n batches of 1000 pairs that cost on_cost / off_cost seconds per
 * pair; optional outlier: batch `spike` of the cache arm costs 100x.
 * Returns: how many of the n used the cache. */
static unsigned run(us_cachegate *g, unsigned n, double on_cost, double off_cost, int spike)
{
    unsigned on = 0;
    for (unsigned i = 0; i < n; i++) {
        bool use = us_cachegate_next(g);
        double c = use ? on_cost : off_cost;
        if (use && (int)i == spike)
            c *= 100;
        us_cachegate_record(g, use, c * 1000, 1000);
        on += use;
    }
    return on;
}

static void test_warm_then_explore(void **state)
{
    (void)state;
    us_cachegate g;
    us_cachegate_init(&g);
    /* warm-up uses the cache and is not measured: a cold cache is slow */
    assert_int_equal(run(&g, US_CACHEGATE_WARM, 1.0, 1e-9, -1), US_CACHEGATE_WARM);
    assert_true(us_cachegate_median(&g, true) < 0);
    /* then each arm gets US_CACHEGATE_MIN measured batches, cache arm first */
    for (unsigned i = 0; i < US_CACHEGATE_MIN; i++) {
        assert_true(us_cachegate_next(&g));
        us_cachegate_record(&g, true, 2e-6, 1);
    }
    for (unsigned i = 0; i < US_CACHEGATE_MIN; i++) {
        assert_false(us_cachegate_next(&g));
        us_cachegate_record(&g, false, 1e-6, 1);
    }
    assert_true(us_cachegate_median(&g, true) == 2e-6);
    assert_true(us_cachegate_median(&g, false) == 1e-6);
    assert_int_equal(g.used[1], US_CACHEGATE_WARM + US_CACHEGATE_MIN);
    assert_int_equal(g.used[0], US_CACHEGATE_MIN);
}

/* A cache that costs more is used only on probes: 1 batch in PROBE. */
static void test_slower_cache_bypassed(void **state)
{
    (void)state;
    us_cachegate g;
    us_cachegate_init(&g);
    run(&g, US_CACHEGATE_WARM + 2 * US_CACHEGATE_MIN, 1.1e-9, 1.0e-9, -1);
    unsigned n = 20 * US_CACHEGATE_PROBE;
    assert_int_equal(run(&g, n, 1.1e-9, 1.0e-9, -1), n / US_CACHEGATE_PROBE);
}

/* A cache that pays is bypassed only on probes; one preempted batch of
 * the cache arm (100x its cost) does not flip the choice. */
static void test_faster_cache_kept(void **state)
{
    (void)state;
    us_cachegate g;
    us_cachegate_init(&g);
    run(&g, US_CACHEGATE_WARM + 2 * US_CACHEGATE_MIN, 0.5e-9, 1.0e-9, -1);
    unsigned n = 20 * US_CACHEGATE_PROBE;
    assert_int_equal(run(&g, n, 0.5e-9, 1.0e-9, 5), n - n / US_CACHEGATE_PROBE);
}

/* The workload changes: the cache starts paying after it lost. Probes
 * refill the cache arm's window, and within WINDOW probes the gate turns
 * it back on. */
static void test_follows_change(void **state)
{
    (void)state;
    us_cachegate g;
    us_cachegate_init(&g);
    run(&g, 10 * US_CACHEGATE_PROBE, 2.0e-9, 1.0e-9, -1);
    run(&g, US_CACHEGATE_WINDOW * US_CACHEGATE_PROBE, 0.5e-9, 1.0e-9, -1);
    unsigned n = 4 * US_CACHEGATE_PROBE;
    assert_int_equal(run(&g, n, 0.5e-9, 1.0e-9, -1), n - n / US_CACHEGATE_PROBE);
}

static void test_ignores_empty_batches(void **state)
{
    (void)state;
    us_cachegate g;
    us_cachegate_init(&g);
    run(&g, US_CACHEGATE_WARM, 1e-9, 1e-9, -1);
    assert_true(us_cachegate_next(&g));
    us_cachegate_record(&g, true, 1.0, 0);     /* 0 pairs */
    us_cachegate_record(&g, true, 0.0, 10);    /* no time */
    assert_int_equal(g.n[1], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warm_then_explore),
        cmocka_unit_test(test_slower_cache_bypassed),
        cmocka_unit_test(test_faster_cache_kept),
        cmocka_unit_test(test_follows_change),
        cmocka_unit_test(test_ignores_empty_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
