/*
 * test_placement.c — block placement (proto/placement.h): golden values,
 * balance, minimal movement from S to S+1 shards, replica owners.
 *
 * Balance note: the issue asks max/mean <= 1.05 "with >= 1000 blocks per
 * shard". At exactly 1000 per shard no uniform placement meets that every
 * time: sd/mean = 1/sqrt(1000) = 3.2%, so the fullest of S shards often sits
 * above 1.05 (measured: S = 4, 4000 blocks, 2000 layouts: this hash exceeds
 * 1.05 in 270, a xorshift random placement in 242; worst 1.124). The hash
 * is as balanced as random placement (chi-square test below); the 1.05
 * bound is tested at 10000 blocks per shard, where it holds for S <= 100.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "proto/placement.h"

/* Golden values from an independent Python implementation of placement.h
 * (jump hash with IEEE double arithmetic, as in the paper). A change here
 * would silently re-home every block of every existing store. */
static void test_golden(void **state)
{
    (void)state;
    static const struct { uint32_t table; uint64_t block; uint64_t seed; int shards;
                          uint64_t mix; int owner; } g[] = {
        { 0, 0u, 0x0ull, 1, 0x33fe8bd4f9c57863ull, 0 },
        { 0, 0u, 0x0ull, 2, 0x33fe8bd4f9c57863ull, 1 },
        { 0, 1u, 0x0ull, 8, 0x2aea2ec8299df491ull, 4 },
        { 3, 12345u, 0x2aull, 7, 0xfb0f86b108d3832full, 2 },
        { 7, 1099511627781ull, 0xdeadbeefull, 100, 0x4ceb00c77235f96bull, 77 },
        { 1, 999u, 0x1ull, 1000, 0x64ea8834efdb1779ull, 271 },
        { 2, 77u, 0x8000000000000000ull, 3, 0x3ac153661f88c0e6ull, 0 },
        { 0, 18446744073709551615ull, 0x5ull, 64, 0x64a3cd80124a30c8ull, 56 },
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        assert_int_equal(us_mix64(g[i].table, g[i].block, g[i].seed), g[i].mix);
        assert_int_equal(us_placement_shard(g[i].table, g[i].block, g[i].seed, g[i].shards),
                         g[i].owner);
    }
    /* jump hash of the paper for small keys */
    assert_int_equal(us_jump_hash(0, 1), 0);
    assert_int_equal(us_jump_hash(0, 1000), 0);   /* key 0: first step lands far */
}

static double max_over_mean(uint32_t table, uint64_t seed, int shards, uint64_t blocks,
                            double *chi2_per_dof)
{
    uint64_t *count = calloc((size_t)shards, sizeof *count);
    for (uint64_t b = 0; b < blocks; b++) {
        int s = us_placement_shard(table, b, seed, shards);
        assert_true(s >= 0 && s < shards);
        count[s]++;
    }
    double mean = (double)blocks / shards, mx = 0, chi2 = 0;
    for (int s = 0; s < shards; s++) {
        mx = count[s] > mx ? (double)count[s] : mx;
        chi2 += ((double)count[s] - mean) * ((double)count[s] - mean) / mean;
    }
    free(count);
    if (chi2_per_dof)
        *chi2_per_dof = shards > 1 ? chi2 / (shards - 1) : 1.0;
    return mx / mean;
}

static void test_balance(void **state)
{
    (void)state;
    /* The bound max/mean <= 1.05, at 10000 blocks per shard. */
    static const int shards[] = { 2, 3, 4, 5, 7, 8, 16, 31, 64, 100 };
    for (size_t i = 0; i < sizeof shards / sizeof shards[0]; i++)
        for (uint32_t table = 0; table < 3; table++) {
            int s = shards[i];
            double r = max_over_mean(table, 1234 + table, s, 10000ull * (uint64_t)s, NULL);
            if (r > 1.05)
                fail_msg("S=%d table %u: max/mean %.4f > 1.05 at 10000 blocks/shard",
                         s, table, r);
        }
    /* At 1000 blocks per shard the spread must be that of uniform random
     * placement: mean chi-square/dof over many layouts is 1 +- 0.15 (a
     * biased hash gives far more). max/mean > 1.05 happens there for any
     * uniform hash: measured 13.5% of layouts at S = 4 for this hash and
     * 12.1% for a xorshift random placement. */
    /* layouts per S so that the sd of the mean, sqrt(2 / (layouts * (S-1))),
     * is <= 0.04: the +-0.15 band is > 3.5 sd */
    static const struct { int shards, layouts; } chi_cases[] = { { 4, 400 }, { 64, 40 } };
    for (size_t i = 0; i < 2; i++) {
        double sum = 0;
        int n = chi_cases[i].layouts;
        for (uint64_t seed = 0; seed < (uint64_t)n; seed++) {
            double chi;
            max_over_mean((uint32_t)seed % 5, seed * 7919, chi_cases[i].shards,
                          1000ull * (uint64_t)chi_cases[i].shards, &chi);
            sum += chi;
        }
        if (sum / n < 0.85 || sum / n > 1.15)
            fail_msg("S=%d: mean chi2/dof %.3f over %d layouts", chi_cases[i].shards, sum / n, n);
    }
    /* consecutive blocks of one table are not clustered: 4096 blocks over 4 shards
     * in runs of 64 consecutive blocks each see all 4 shards */
    for (uint64_t run = 0; run < 64; run++) {
        int seen = 0;
        for (uint64_t b = run * 64; b < run * 64 + 64; b++)
            seen |= 1 << us_placement_shard(0, b, 0, 4);
        assert_int_equal(seen, 0xf);
    }
}

static void test_minimal_movement(void **state)
{
    (void)state;
    const uint64_t blocks = 40000;
    for (int s = 1; s <= 32; s++) {
        uint64_t moved = 0;
        for (uint64_t b = 0; b < blocks; b++) {
            int a = us_placement_shard(2, b, 77, s), c = us_placement_shard(2, b, 77, s + 1);
            if (a != c) {
                moved++;
                /* jump hash only ever moves a block to the new shard */
                assert_int_equal(c, s);
            }
        }
        double frac = (double)moved / blocks, ideal = 1.0 / (s + 1);
        if (frac < 0.9 * ideal || frac > 1.1 * ideal)
            fail_msg("S=%d -> %d: moved %.4f, ideal %.4f", s, s + 1, frac, ideal);
    }
    /* the seed changes the placement (a fresh layout), tables differ too */
    int differ_seed = 0, differ_table = 0;
    for (uint64_t b = 0; b < 1000; b++) {
        differ_seed += us_placement_shard(0, b, 1, 16) != us_placement_shard(0, b, 2, 16);
        differ_table += us_placement_shard(0, b, 1, 16) != us_placement_shard(1, b, 1, 16);
    }
    assert_true(differ_seed > 900 && differ_table > 900);
}

static void test_owners(void **state)
{
    (void)state;
    int owners[8];
    for (uint64_t b = 0; b < 2000; b++) {
        int n = us_placement_owners(1, b, 3, 5, 3, owners);
        assert_int_equal(n, 3);
        assert_int_equal(owners[0], us_placement_shard(1, b, 3, 5));
        assert_true(owners[0] != owners[1] && owners[0] != owners[2] && owners[1] != owners[2]);
        for (int i = 0; i < 3; i++)
            assert_true(owners[i] >= 0 && owners[i] < 5);
    }
    /* more replicas than shards: every shard once */
    assert_int_equal(us_placement_owners(0, 9, 0, 3, 8, owners), 3);
    assert_int_equal(owners[0] + owners[1] + owners[2], 0 + 1 + 2);
    assert_int_equal(us_placement_owners(0, 9, 0, 1, 1, owners), 1);
    assert_int_equal(owners[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_minimal_movement),
        cmocka_unit_test(test_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
