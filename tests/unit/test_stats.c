/* test_stats.c — percentiles against values computed by hand (numpy's
 * "linear" method gives the same: np.percentile(x, q)). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "kernels/stats.h"

static void test_percentile_known(void **state)
{
    (void)state;
    double x[] = { 9, 1, 5, 3, 7 };                  /* sorted: 1 3 5 7 9 */
    us_sort_doubles(x, 5);
    assert_true(x[0] == 1 && x[4] == 9);
    assert_true(us_percentile_sorted(x, 5, 0.5) == 5);
    assert_true(us_percentile_sorted(x, 5, 0.0) == 1);
    assert_true(us_percentile_sorted(x, 5, 1.0) == 9);
    assert_true(fabs(us_percentile_sorted(x, 5, 0.99) - 8.92) < 1e-12);  /* h 3.96 */
    assert_true(fabs(us_percentile_sorted(x, 5, 0.25) - 3) < 1e-12);
    double even[] = { 1, 2, 3, 4 };
    assert_true(us_percentile_sorted(even, 4, 0.5) == 2.5);
    assert_true(fabs(us_percentile_sorted(even, 4, 0.99) - 3.97) < 1e-12);
}

/* The bug this replaced: with 2 samples the truncating index put p99 on the
 * smaller sample and p50 on the larger. */
static void test_percentile_monotone_small_n(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 40; n++) {
        double x[40];
        for (size_t i = 0; i < n; i++)
            x[i] = (double)((i * 7919) % 41);
        us_sort_doubles(x, n);
        double p50 = us_percentile_sorted(x, n, 0.5), p99 = us_percentile_sorted(x, n, 0.99);
        assert_true(p50 <= p99);
        assert_true(p99 <= x[n - 1] && p50 >= x[0]);
    }
    double two[] = { 1.0, 3.0 };
    assert_true(us_percentile_sorted(two, 2, 0.5) == 2.0);
    assert_true(fabs(us_percentile_sorted(two, 2, 0.99) - 2.98) < 1e-12);
    assert_true(isnan(us_percentile_sorted(two, 0, 0.5)));
}

static void test_sort_nan_last(void **state)
{
    (void)state;
    double x[] = { 2, NAN, 1 };
    us_sort_doubles(x, 3);
    assert_true(x[0] == 1 && x[1] == 2 && isnan(x[2]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile_known),
        cmocka_unit_test(test_percentile_monotone_small_n),
        cmocka_unit_test(test_sort_nan_last),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
