/*
 * test_hash.c — kernels/hash.h: SplitMix64 and FNV-1a pinned by golden values.
 *
 * The SplitMix64 and FNV-1a goldens were computed from the hand-written
 * copies this header replaced (proto/placement.c, shard/synthetic.c,
 * coordinator/infer/sampler.c, coordinator/model/model_io.c,
 * coordinator/infer/prompts.c, shard/session.c) before they were removed, so
 * stores, sessions and sampling streams written earlier stay valid. The
 * callers' own outputs (synthetic row hash, sampler stream, session owner)
 * are pinned too: they catch a caller wired to the wrong helper.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/infer/sampler.h"
#include "kernels/hash.h"
#include "shard/session.h"
#include "shard/synthetic.h"

static void test_splitmix64_mix_golden(void **state)
{
    (void)state;
    static const struct { uint64_t in, out; } g[] = {
        { 0x0000000000000000ull, 0x0000000000000000ull },
        { 0x0000000000000001ull, 0x5692161d100b05e5ull },
        { 0x9e3779b97f4a7c15ull, 0xe220a8397b1dcdafull },
        { 0xdeadbeefcafef00dull, 0x19104ae2406d51c3ull },
        { 0xffffffffffffffffull, 0xb4d055fcf2cbbd7bull },
        { 0x0000000000003039ull, 0xf36cf1164265dd51ull },
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        assert_int_equal(us_splitmix64_mix(g[i].in), g[i].out);
}

/* The stream from state 0 is the reference SplitMix64 sequence
 * (Vigna's splitmix64.c with x = 0). */
static void test_splitmix64_stream_golden(void **state)
{
    (void)state;
    static const uint64_t want[] = { 0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull,
                                     0x06c45d188009454full, 0xf88bb8a8724c81ecull };
    uint64_t s = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(us_splitmix64_next(&s), want[i]);
    assert_int_equal(s, 4 * US_SPLITMIX64_GAMMA);
}

/* Published FNV-1a 64 test vectors (draft-eastlake-fnv, isthe.com). */
static void test_fnv1a64_vectors(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t h; } g[] = {
        { "", 0xcbf29ce484222325ull },
        { "a", 0xaf63dc4c8601ec8cull },
        { "foobar", 0x85944171f73967e8ull },
        { "seq-1", 0x07fc0a307d3f03d6ull },   /* golden from the old copies */
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        assert_int_equal(us_fnv1a64(US_FNV1A64_INIT, g[i].s, strlen(g[i].s)), g[i].h);
        assert_int_equal(us_fnv1a64_str(g[i].s), g[i].h);
    }
    /* chaining hashes a concatenation */
    assert_int_equal(us_fnv1a64(us_fnv1a64(US_FNV1A64_INIT, "foo", 3), "bar", 3),
                     0x85944171f73967e8ull);
}

static void test_callers_golden(void **state)
{
    (void)state;
    assert_int_equal(us_synth_row_hash(42, 3, 99999999999ull), 0x2a5224a6d6be3342ull);

    us_rng r;
    us_rng_seed(&r, 7, "seq-1");
    assert_int_equal(r.state, 0x8086451bdecbf486ull);
    static const uint64_t next[] = { 0x6428ff28fa115735ull, 0x349ce54dd672eb1full,
                                     0xef58d4912b8546deull, 0x3a42c7b3701189d8ull };
    for (size_t i = 0; i < sizeof next / sizeof next[0]; i++)
        assert_int_equal(us_rng_next(&r), next[i]);

    static const struct { const char *id; int owner; } o[] = {
        { "", 0 }, { "a", 3 }, { "foobar", 4 }, { "seq-1", 2 },
    };
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        assert_int_equal(us_session_owner(o[i].id, 7, 5), o[i].owner);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splitmix64_mix_golden),
        cmocka_unit_test(test_splitmix64_stream_golden),
        cmocka_unit_test(test_fnv1a64_vectors),
        cmocka_unit_test(test_callers_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
