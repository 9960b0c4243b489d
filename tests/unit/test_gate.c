/* test_gate.c — the row cache's measured on/off gate (coordinator/lookup/gate.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "coordinator/lookup/gate.h"

/* Runs n batches of 1000 pairs that cost on_cost / off_cost seconds per
 * pair; optional outlier: batch `spike` of the cache arm costs 100x.
 * Returns: how many of the n used the cache. */
static unsigned run(us_gate *g, unsigned n, double on_cost, double off_cost, int spike)
{
    unsigned on = 0;
    for (unsigned i = 0; i < n; i++) {
        bool use = us_gate_next(g);
        double c = use ? on_cost : off_cost;
        if (use && (int)i == spike)
            c *= 100;
        us_gate_record(g, use, c * 1000, 1000);
        on += use;
    }
    return on;
}

static void test_warm_then_explore(void **state)
{
    (void)state;
    us_gate g;
    us_gate_init(&g);
    /* warm-up uses the cache and is not measured: a cold cache is slow */
    assert_int_equal(run(&g, US_GATE_WARM, 1.0, 1e-9, -1), US_GATE_WARM);
    assert_true(us_gate_median(&g, true) < 0);
    /* then each arm gets US_GATE_MIN measured batches, cache arm first;
     * the first batch after the switch is not measured */
    for (unsigned i = 0; i < US_GATE_MIN; i++) {
        assert_true(us_gate_next(&g));
        us_gate_record(&g, true, 2e-6, 1);
    }
    assert_false(us_gate_next(&g));
    us_gate_record(&g, false, 1.0, 1);
    for (unsigned i = 0; i < US_GATE_MIN; i++) {
        assert_false(us_gate_next(&g));
        us_gate_record(&g, false, 1e-6, 1);
    }
    assert_true(us_gate_median(&g, true) == 2e-6);
    assert_true(us_gate_median(&g, false) == 1e-6);
    assert_int_equal(g.used[1], US_GATE_WARM + US_GATE_MIN);
    assert_int_equal(g.used[0], US_GATE_MIN + 1);
    /* the cheaper arm is chosen for the next US_GATE_MIN_INTERVAL */
    assert_int_equal(run(&g, US_GATE_MIN_INTERVAL, 2e-9, 1e-9, -1), 0);
}

/* A cache that costs more is used only on probes, and probes thin out
 * while they confirm the choice (intervals 8, 16, ..., 256): 400 batches
 * see 6 probes of 2 batches, not 40. */
static void test_slower_cache_bypassed(void **state)
{
    (void)state;
    us_gate g;
    us_gate_init(&g);
    run(&g, US_GATE_WARM + 2 * US_GATE_MIN + 1, 1.1e-9, 1.0e-9, -1);
    unsigned on = run(&g, 400, 1.1e-9, 1.0e-9, -1);
    assert_in_range(on, 4 * US_GATE_PROBE_LEN, 7 * US_GATE_PROBE_LEN);
}

/* A cache that pays is bypassed only on probes; one preempted batch of
 * the cache arm (100x its cost) does not flip the choice. */
static void test_faster_cache_kept(void **state)
{
    (void)state;
    us_gate g;
    us_gate_init(&g);
    run(&g, US_GATE_WARM + 2 * US_GATE_MIN + 1, 0.5e-9, 1.0e-9, -1);
    unsigned on = run(&g, 400, 0.5e-9, 1.0e-9, 5);
    assert_in_range(400 - on, 4 * US_GATE_PROBE_LEN, 7 * US_GATE_PROBE_LEN);
}

/* The workload changes: the cache starts paying after it lost. A probe
 * that beats the chosen arm brings the next probes closer, and once the
 * cache arm's median is the lower one the gate keeps it. */
static void test_follows_change(void **state)
{
    (void)state;
    us_gate g;
    us_gate_init(&g);
    run(&g, 200, 2.0e-9, 1.0e-9, -1);
    assert_false(g.best);
    run(&g, US_GATE_MAX_INTERVAL + 100, 0.5e-9, 1.0e-9, -1);
    assert_true(g.best);
    assert_in_range(run(&g, 64, 0.5e-9, 1.0e-9, -1), 64 - 2 * US_GATE_PROBE_LEN, 64);
}

static void test_ignores_empty_batches(void **state)
{
    (void)state;
    us_gate g;
    us_gate_init(&g);
    run(&g, US_GATE_WARM, 1e-9, 1e-9, -1);
    assert_true(us_gate_next(&g));
    us_gate_record(&g, true, 1.0, 0);     /* 0 pairs */
    us_gate_record(&g, true, 0.0, 10);    /* no time */
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
