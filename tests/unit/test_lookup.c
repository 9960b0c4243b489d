/*
 * test_lookup.c — the lookup round engine (coordinator/lookup/lookup.h) in one
 * process: an MPI singleton whose rank 0 is coordinator and shard, over the
 * mpi transport. Every batch goes through routing, dedupe, the request
 * encoding, the shard's serve path and the merge, and must equal the
 * single-process gather (us_gather_sum_ref) of the same rows: push-down and
 * pull, row and column placement, with and without IVE groups, plus the
 * cache and a bad batch that fails its round but not the next one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "coordinator/lookup/lookup.h"
#include "kernels/gather.h"
#include "kernels/hash.h"
#include "proto/transport.h"
#include "proto/world.h"
#include "shard/synth_view.h"

#define T 24        /* tokens per batch */
#define K 8         /* pairs per token */
#define DIM 12
#define ROWS 3000

static us_world world;
static bool cache_always;   /* open_lookup's lookups bypass the cache gate */

typedef struct setup {
    us_table_info table;
    us_synth_view local, whole;
    us_transport *t;
    us_lookup *L;
} setup;

static void open_lookup(setup *s, us_placement_kind placement, us_lookup_mode mode,
                        uint32_t n_groups, uint64_t cache_bytes)
{
    us_err err = {0};
    memset(s, 0, sizeof *s);
    s->table = (us_table_info){ .table_id = 3, .rows = ROWS, .dim = DIM, .dtype = US_DTYPE_F32,
                                .block_bits = 6, .placement_seed = 77, .placement = placement };
    us_synth_spec spec = { .dtype = US_DTYPE_F32, .synth_seed = 5, .table_id = 3, .rows = ROWS,
                           .dim = DIM, .block_bits = 6, .placement_seed = 77,
                           .column = placement == US_PLACE_COLUMN, .n_shards = 1,
                           .shard_index = 0 };
    assert_int_equal(us_synth_view_build(&s->local, &spec, &err), US_OK);
    spec.shard_index = -1;
    spec.column = false;
    assert_int_equal(us_synth_view_build(&s->whole, &spec, &err), US_OK);
    assert_int_equal(us_transport_open("mpi", &world, NULL, &s->t, &err), US_OK);
    us_lookup_opts o = { .mode = mode, .max_tokens = T, .max_k = K, .n_groups = n_groups,
                         .cache_bytes = cache_bytes, .cache_always = cache_always,
                         .n_threads = 1 };
    int rc = us_lookup_open(&s->L, &world, s->t, &s->table, &s->local.view, &o, &err);
    if (rc != US_OK)
        fail_msg("us_lookup_open: %s", err.msg);
}

static void close_lookup(setup *s)
{
    us_err err = {0};
    assert_int_equal(us_lookup_finish(s->L, &err), US_OK);
    us_lookup_close(s->L);
    us_transport_close(s->t);
    us_synth_view_free(&s->local);
    us_synth_view_free(&s->whole);
}

/* One batch with repeated rows (dedupe) against the scalar reference. */
static void check_batch(setup *s, uint64_t seed, uint32_t n_groups)
{
    uint64_t rows[T * K];
    float w[T * K];
    uint8_t g[T * K];
    for (int i = 0; i < T * K; i++) {
        rows[i] = us_splitmix64_next(&seed) % (i % 3 == 0 ? 16 : ROWS);   /* hot rows repeat */
        w[i] = (float)(us_splitmix64_next(&seed) % 2001) / 1000.0f - 1.0f;
        g[i] = (uint8_t)(us_splitmix64_next(&seed) % n_groups);
    }
    us_lookup_batch b = { .n_tokens = T, .k = K, .rows = rows, .weights = w,
                          .groups = n_groups > 1 ? g : NULL };
    size_t n_out = (size_t)T * n_groups * DIM;
    float *out = calloc(n_out, sizeof *out), *ref = calloc(n_out, sizeof *ref);
    us_err err = {0};
    int rc = us_lookup_run(s->L, &b, out, &err);
    if (rc != US_OK)
        fail_msg("us_lookup_run: %s", err.msg);
    if (n_groups > 1)
        assert_int_equal(us_gather_sum_grouped(ref, &s->whole.view, rows, w, g, T, K,
                                               (int)n_groups, 1, &err), US_OK);
    else
        assert_int_equal(us_gather_sum_ref(ref, &s->whole.view, rows, w, T, K, &err), US_OK);
    for (size_t i = 0; i < n_out; i++)
        if (fabsf(out[i] - ref[i]) > 1e-5f * (1.0f + fabsf(ref[i])))
            fail_msg("element %zu: lookup %.9g, reference %.9g", i, out[i], ref[i]);
    free(out);
    free(ref);
}

static void test_push_row(void **state)
{
    (void)state;
    setup s;
    open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PUSH, 1, 0);
    check_batch(&s, 1, 1);
    check_batch(&s, 2, 1);
    assert_int_equal(us_lookup_last_mode(s.L), US_LOOKUP_PUSH);
    const us_lookup_stats *st = us_lookup_get_stats(s.L);
    assert_int_equal(st->batches, 2);
    assert_int_equal(st->push_batches, 2);
    assert_int_equal(st->pairs, 2 * T * K);
    assert_true(st->unique_rows < st->pairs);   /* the hot rows were deduplicated */
    close_lookup(&s);
}

static void test_pull_row_and_groups(void **state)
{
    (void)state;
    setup s;
    open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PULL, 1, 0);
    check_batch(&s, 3, 1);
    assert_int_equal(us_lookup_last_mode(s.L), US_LOOKUP_PULL);
    us_lookup_set_mode(s.L, US_LOOKUP_PUSH);
    check_batch(&s, 4, 1);
    assert_int_equal(us_lookup_last_mode(s.L), US_LOOKUP_PUSH);
    close_lookup(&s);
    open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PUSH, 4, 0);
    check_batch(&s, 5, 4);
    close_lookup(&s);
}

static void test_column_and_cache(void **state)
{
    (void)state;
    setup s;
    open_lookup(&s, US_PLACE_COLUMN, US_LOOKUP_PUSH, 1, 0);
    check_batch(&s, 6, 1);
    close_lookup(&s);
    open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PULL, 1, 64 * 1024);
    check_batch(&s, 7, 1);
    check_batch(&s, 7, 1);   /* seen again: now admitted to the cache */
    check_batch(&s, 7, 1);   /* the same rows a third time: served from the cache */
    assert_non_null(us_lookup_cache(s.L));
    assert_true(us_lookup_get_stats(s.L)->local_rows > 0);
    close_lookup(&s);
}

/* The cache gate: of 20 pull batches the first US_GATE_WARM use the
 * cache, then each side gets US_GATE_MIN measured batches whatever
 * the timings; with cache_always all 20 do. Every batch equals the
 * reference either way (a bypassed batch must not read stale slots).
 * (The first off batch after the switch is not measured: MIN + 1 off.) */
static void test_cache_gate(void **state)
{
    (void)state;
    for (int always = 0; always <= 1; always++) {
        setup s;
        cache_always = always;
        open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PULL, 1, 64 * 1024);
        for (uint64_t b = 0; b < 20; b++)
            check_batch(&s, 40 + b % 3, 1);
        const us_lookup_stats *st = us_lookup_get_stats(s.L);
        if (always) {
            assert_int_equal(st->cache_batches, 20);
        } else {
            assert_true(st->cache_batches >= US_GATE_WARM + US_GATE_MIN);
            assert_true(st->cache_batches <= 20 - US_GATE_MIN - 1);
        }
        assert_true(st->local_rows > 0);
        close_lookup(&s);
    }
    cache_always = false;
}

/* A row beyond the table fails its own round, naming it, and the engine
 * goes on with the next batch. */
static void test_bad_batch_then_good(void **state)
{
    (void)state;
    setup s;
    open_lookup(&s, US_PLACE_ROW, US_LOOKUP_PUSH, 1, 0);
    uint64_t rows[K] = { 1, 2, ROWS + 5, 3, 4, 5, 6, 7 };
    float w[K] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    float out[DIM];
    us_lookup_batch b = { .n_tokens = 1, .k = K, .rows = rows, .weights = w };
    us_err err = {0};
    int rc = us_lookup_run(s.L, &b, out, &err);
    assert_int_not_equal(rc, US_OK);
    assert_non_null(strstr(err.msg, "row"));
    check_batch(&s, 8, 1);
    close_lookup(&s);
}

int main(int argc, char **argv)
{
    us_err err = {0};
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&world, &argc, &argv, &wo, &err) != US_OK) {
        fprintf(stderr, "MPI singleton start failed: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_row),
        cmocka_unit_test(test_pull_row_and_groups),
        cmocka_unit_test(test_column_and_cache),
        cmocka_unit_test(test_cache_gate),
        cmocka_unit_test(test_bad_batch_then_good),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    us_world_finalize(&world);
    return failed;
}
