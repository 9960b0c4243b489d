/* test_sample.c — kernels/sample.h: greedy ties and NaN, top-p truncation,
 * the uniform draw's mapping onto cumulative mass, allowed masks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "kernels/sample.h"

static void test_argmax(void **state)
{
    (void)state;
    const float l[5] = { 1.0f, 3.0f, NAN, 3.0f, -INFINITY };
    assert_int_equal(us_logits_argmax(l, NULL, 5), 1);        /* tie -> lower index */
    const uint8_t no_first_best[5] = { 1, 0, 1, 1, 1 };
    assert_int_equal(us_logits_argmax(l, no_first_best, 5), 3);
    const uint8_t only_nan[5] = { 0, 0, 1, 0, 0 };
    assert_int_equal(us_logits_argmax(l, only_nan, 5), -1);
    assert_int_equal(us_logits_argmax(l, NULL, 0), -1);
    const float neg[2] = { -INFINITY, -INFINITY };
    assert_int_equal(us_logits_argmax(neg, NULL, 2), 0);
}

static void test_top_p(void **state)
{
    (void)state;
    double scratch[8];
    assert_true(us_sample_top_p_scratch_bytes(4) <= sizeof scratch);
    /* two equal logits: p = 1/2 each; u below 1/2 picks the lower index */
    const float two[2] = { 0.5f, 0.5f };
    assert_int_equal(us_sample_top_p(two, NULL, 2, 0, 1.0f, 1.0f, 0.0, scratch), 0);
    assert_int_equal(us_sample_top_p(two, NULL, 2, 0, 1.0f, 1.0f, 0.49, scratch), 0);
    assert_int_equal(us_sample_top_p(two, NULL, 2, 0, 1.0f, 1.0f, 0.51, scratch), 1);
    /* logits ln 3, 0 at temperature 1: p = 3/4, 1/4 */
    const float l[3] = { 0.0f, logf(3.0f), NAN };
    assert_int_equal(us_sample_top_p(l, NULL, 3, 1, 1.0f, 1.0f, 0.74, scratch), 1);
    assert_int_equal(us_sample_top_p(l, NULL, 3, 1, 1.0f, 1.0f, 0.76, scratch), 0);
    /* top_p 0.7 < 3/4 keeps only the best, whatever u */
    assert_int_equal(us_sample_top_p(l, NULL, 3, 1, 1.0f, 0.7f, 0.99, scratch), 1);
    /* temperature 2: p proportional to sqrt(3), 1 -> 0.634, 0.366 */
    assert_int_equal(us_sample_top_p(l, NULL, 3, 1, 2.0f, 1.0f, 0.62, scratch), 1);
    assert_int_equal(us_sample_top_p(l, NULL, 3, 1, 2.0f, 1.0f, 0.65, scratch), 0);
    /* a masked token is never chosen */
    const uint8_t allow[3] = { 0, 1, 1 };
    assert_int_equal(us_sample_top_p(l, allow, 3, 1, 1.0f, 1.0f, 0.999, scratch), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_top_p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
