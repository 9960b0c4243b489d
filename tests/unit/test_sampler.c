/* test_sampler.c — sampling (sampler.c): greedy ties, top-p, frequencies of
 * temperature sampling, per-sequence random streams. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "coordinator/infer/sampler.h"

static void test_sampler(void **state)
{
    (void)state;
    float logits[5] = { 1, 3, 3, NAN, 2 };
    uint8_t allowed[5] = { 1, 1, 1, 1, 1 };
    void *scratch = malloc(us_sampler_scratch_bytes(5));
    us_rng rng;
    us_rng_seed(&rng, 1, "s");
    us_sampler_params greedy = { 0.0f, 1.0f };
    assert_int_equal(us_sample(logits, allowed, 5, &greedy, &rng, scratch), 1);  /* tie -> lower */
    allowed[1] = 0;
    assert_int_equal(us_sample(logits, allowed, 5, &greedy, &rng, scratch), 2);
    us_sampler_params narrow = { 1.0f, 1e-6f };                                /* top-p ~ 0 */
    for (int i = 0; i < 20; i++)
        assert_int_equal(us_sample(logits, allowed, 5, &narrow, &rng, scratch), 2);
    float none[2] = { NAN, NAN };
    assert_int_equal(us_sample(none, NULL, 2, &narrow, &rng, scratch), -1);
    /* p = (1/4, 3/4): frequencies within 1.5% over 20000 draws (fixed seed) */
    float two[2] = { 0.0f, logf(3.0f) };
    us_sampler_params t1 = { 1.0f, 1.0f };
    int count1 = 0;
    for (int i = 0; i < 20000; i++)
        count1 += us_sample(two, NULL, 2, &t1, &rng, scratch) == 1;
    assert_true(fabs(count1 / 20000.0 - 0.75) < 0.015);
    /* top-p 0.7 keeps only the 0.75 token */
    us_sampler_params p7 = { 1.0f, 0.7f };
    for (int i = 0; i < 100; i++)
        assert_int_equal(us_sample(two, NULL, 2, &p7, &rng, scratch), 1);
    /* streams: same (seed, name) -> same draws; another name -> different */
    us_rng a, b, c;
    us_rng_seed(&a, 9, "id1");
    us_rng_seed(&b, 9, "id1");
    us_rng_seed(&c, 9, "id2");
    uint64_t x = us_rng_next(&a);
    assert_true(x == us_rng_next(&b));
    assert_true(x != us_rng_next(&c));
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
