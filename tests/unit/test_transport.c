/*
 * test_transport.c — both transports in one process (MPI singleton, no
 * mpirun): rank 0 is coordinator and shard, so every exchange is from rank 0
 * to itself. Checks that each backend delivers a message byte-exactly in
 * both directions, back to back, that the mpi backend refuses RMA, and that
 * the fabric backend registers a small table view for RMA and reads rows and
 * int8 scales back from it. The fabric provider is FI_PROVIDER if set, else
 * tcp; without a usable provider the fabric tests are skipped with a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/transport.h"
#include "proto/world.h"

static us_world world;

/* Sends `n` pattern bytes from rank 0 to itself in direction dir and checks
 * what arrives. */
static void exchange_to_self(us_transport *t, us_xchg_dir dir, uint64_t n, uint8_t seed)
{
    uint8_t *send = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    for (uint64_t i = 0; i < n; i++)
        send[i] = (uint8_t)(seed + i * 31);
    uint64_t off[1] = { 0 }, len[1] = { n };
    us_err err = {0};
    int rc = us_transport_exchange(t, dir, send, off, len, &err);
    if (rc != US_OK)
        fail_msg("%s exchange of %llu bytes: %s", t->ops->name, (unsigned long long)n,
                 err.msg);
    uint64_t got_len;
    const uint8_t *got = us_transport_recv(t, 0, &got_len);
    assert_int_equal(got_len, n);
    assert_memory_equal(got, send, n);
    free(send);
}

static void test_mpi_exchange(void **state)
{
    (void)state;
    us_transport *t;
    us_err err = {0};
    assert_int_equal(us_transport_open("mpi", &world, NULL, &t, &err), US_OK);
    assert_string_equal(t->ops->name, "mpi");
    exchange_to_self(t, US_XCHG_TO_SHARDS, 1000, 1);
    exchange_to_self(t, US_XCHG_TO_COORDS, 24, 2);
    exchange_to_self(t, US_XCHG_TO_SHARDS, 0, 3);   /* nothing to say is a valid round */
    exchange_to_self(t, US_XCHG_TO_SHARDS, 1 << 20, 4);
    assert_int_equal(t->stats.exchanges, 4);
    /* pull over messages only: no one-sided reads */
    assert_int_equal(us_transport_rma_expose(t, NULL, &err), US_EUNSUPP);
    us_transport_close(t);
}

/* Opens the fabric backend, or skips the test naming why. */
static us_transport *open_fabric_or_skip(void)
{
    us_transport *t = NULL;
    us_err err = {0};
    us_transport_opts o = { .max_msg_bytes = 1 << 16 };
    int rc = us_transport_open("fabric", &world, &o, &t, &err);
    if (rc != US_OK) {
        fprintf(stderr, "skip: fabric transport unavailable with FI_PROVIDER=%s: %s\n",
                getenv("FI_PROVIDER"), err.msg);
        skip();
    }
    return t;
}

static void test_fabric_exchange(void **state)
{
    (void)state;
    us_transport *t = open_fabric_or_skip();
    exchange_to_self(t, US_XCHG_TO_SHARDS, 1000, 5);
    exchange_to_self(t, US_XCHG_TO_COORDS, 48, 6);
    exchange_to_self(t, US_XCHG_TO_SHARDS, 1 << 16, 7);
    assert_int_equal(t->stats.exchanges, 3);
    us_transport_close(t);
}

/* An int8 table of 40 rows x 6 in blocks of 16 rows (the last partial), the
 * middle block absent: expose it, then read rows and scales back. */
static void test_fabric_rma(void **state)
{
    (void)state;
    enum { ROWS = 40, DIM = 6, BB = 4, NB = 3, STRIDE = 8 };
    static uint8_t data[NB][16 * STRIDE];
    static float scales[NB][16];
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < 16 * STRIDE; i++)
            data[b][i] = (uint8_t)(b * 100 + i);
    for (int b = 0; b < NB; b++)
        for (int r = 0; r < 16; r++)
            scales[b][r] = 0.25f * (float)(b * 16 + r + 1);
    const uint8_t *blocks[NB] = { data[0], NULL, data[2] };
    const float *block_scales[NB] = { scales[0], NULL, scales[2] };
    us_rows_view v = { .dtype = US_DTYPE_INT8, .dim = DIM, .block_bits = BB,
                       .row_stride_bytes = STRIDE, .rows = ROWS, .n_blocks = NB,
                       .blocks = blocks, .block_scales = block_scales };
    us_transport *t = open_fabric_or_skip();
    us_err err = {0};
    int rc = us_transport_rma_expose(t, &v, &err);
    if (rc != US_OK)
        fail_msg("rma_expose: %s", err.msg);
    assert_true(t->rma_ready);
    assert_int_equal(t->rma_row_stride[0], STRIDE);
    void *landing;
    assert_int_equal(us_transport_rma_buffer(t, 256, &landing, &err), US_OK);
    uint8_t *dst = landing;
    /* rows 2..4 of block 0, rows 0..7 (the whole partial tail) of block 2,
     * and the scales of rows 33..34 */
    us_rma_op ops[3] = {
        { .rank = 0, .block_id = 0, .offset = 2 * STRIDE, .bytes = 3 * STRIDE, .dst = dst },
        { .rank = 0, .block_id = 2, .offset = 0, .bytes = 8 * STRIDE, .dst = dst + 64 },
        { .rank = 0, .scales = true, .block_id = 2, .offset = 4, .bytes = 8, .dst = dst + 192 },
    };
    rc = us_transport_rma_read(t, 3, ops, &err);
    if (rc != US_OK)
        fail_msg("rma_read: %s", err.msg);
    assert_memory_equal(dst, data[0] + 2 * STRIDE, 3 * STRIDE);
    assert_memory_equal(dst + 64, data[2], 8 * STRIDE);
    float got[2];
    memcpy(got, dst + 192, sizeof got);
    assert_true(got[0] == 0.25f * 34 && got[1] == 0.25f * 35);
    us_transport_close(t);
}

int main(int argc, char **argv)
{
    setenv("FI_PROVIDER", getenv("FI_PROVIDER") ? getenv("FI_PROVIDER") : "tcp", 1);
    us_err err = {0};
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&world, &argc, &argv, &wo, &err) != US_OK) {
        fprintf(stderr, "MPI singleton start failed: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpi_exchange),
        cmocka_unit_test(test_fabric_exchange),
        cmocka_unit_test(test_fabric_rma),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    us_world_finalize(&world);
    return failed;
}
