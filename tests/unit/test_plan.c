/*
 * test_plan.c — capacity planner (coordinator/plan/plan.h): hand-checked byte,
 * memory and latency values on a small case, the shard-count limits at
 * their boundaries, unreachable targets and input validation.
 *
 * The small case: 1e6 values x 64 f32 (R = 256 B), 1 layer, 1 head, k 4
 * (P = 4), batch 1, blocks of 1024 rows, S = 2 fixed, NIC 1e9 B/s with
 * 10 us latency, 1 us per message, row 100 ns + 1 GB/s, 1 core. By hand:
 *   row push:   D = 2(1 - 1/2^4) = 1.875; request 2*48 + 4*(8+12) = 176;
 *               response 2*48 + 1.875*64*4 = 576; 4 messages per token
 *   row pull:   request 96 + 4*8 = 128; response 96 + 4*256 = 1120
 *   column push request 2*(48 + 80) = 256; response 96 + 64*4 = 352
 *   column pull request 2*(48 + 32) = 160; response 1120
 *   row push round: t_msg 4 us; t_net 20 us + 752 B / 1e9 = 20.752 us;
 *               busiest shard 2 + sqrt(2*2*ln 2) = 3.66511 rows of
 *               100 + 256 = 356 ns; merge 480 B / 1e9 = 0.48 us
 *               => 26.53678 us
 *   row memory: 977 blocks, 488.5 per shard, busiest 488.5 + 3 sqrt(488.5)
 *               = 554.806 blocks = 568121.5 rows * 256 B = 145439092.5 B,
 *               + 20 B per block (11096.1) + buffers 2*(176+576)/2 = 752
 *   column memory: 1e6 * 32 * 4 + 977 * 20 + 2*(256+352)/2 = 128020148
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/plan/plan.h"

#define assert_close(a, b, rel) \
    do { double a_ = (a), b_ = (b); \
         if (!(fabs(a_ - b_) <= (rel) * fabs(b_))) \
             fail_msg("%s = %.10g, want %.10g", #a, a_, b_); } while (0)

static us_plan_input small_case(void)
{
    us_plan_input in;
    us_plan_defaults(&in);
    in.values = 1e6; in.dim = 64; in.dtype = US_DTYPE_F32;
    in.layers = 1; in.heads = 1; in.k = 4; in.groups = 1;
    in.batch_tokens = 1; in.block_bits = 10; in.shards = 2;
    in.nic_bytes_per_s = 1e9; in.nic_latency_s = 10e-6; in.msg_overhead_s = 1e-6;
    in.row_ns = 100; in.gather_bytes_per_s = 1e9; in.cores = 1;
    return in;
}

static us_plan_result compute(const us_plan_input *in, us_plan_placement pl, us_plan_mode m)
{
    us_plan_result r;
    us_err err = {0};
    int rc = us_plan_compute(in, pl, m, &r, &err);
    if (rc != US_OK)
        fail_msg("us_plan_compute: %s", err.msg);
    return r;
}

static void test_distinct_shards(void **state)
{
    (void)state;
    assert_close(us_plan_distinct_shards(4, 2), 1.875, 1e-12);
    assert_close(us_plan_distinct_shards(1, 1000), 1.0, 1e-9);
    assert_close(us_plan_distinct_shards(7, 1), 1.0, 0);
    /* many shards: nearly every pair on its own shard; few: every shard hit */
    assert_close(us_plan_distinct_shards(32, 1e9), 32.0, 1e-6);
    assert_close(us_plan_distinct_shards(1e4, 8), 8.0, 1e-9);
    assert_close(us_plan_row_bytes(64, US_DTYPE_INT8), 68.0, 0);
    assert_close(us_plan_row_bytes(64, US_DTYPE_BF16), 128.0, 0);
}

static void test_small_case_bytes(void **state)
{
    (void)state;
    us_plan_input in = small_case();
    us_plan_result r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_int_equal(r.shards, 2);
    assert_string_equal(r.limit, "fixed");
    assert_close(r.shards_per_token_layer, 1.875, 1e-12);
    assert_close(r.request_bytes_per_token, 176, 1e-12);
    assert_close(r.response_bytes_per_token, 576, 1e-12);
    assert_close(r.net_bytes_per_token, 752, 1e-12);
    assert_close(r.messages_per_token, 4, 0);
    assert_close(r.shard_net_bytes_per_token, 376, 1e-12);

    r = compute(&in, US_PLAN_ROW, US_PLAN_PULL);
    assert_close(r.request_bytes_per_token, 128, 1e-12);
    assert_close(r.response_bytes_per_token, 1120, 1e-12);

    r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    assert_close(r.request_bytes_per_token, 256, 1e-12);
    assert_close(r.response_bytes_per_token, 352, 1e-12);
    assert_close(r.shards_per_token_layer, 2, 0);

    r = compute(&in, US_PLAN_COLUMN, US_PLAN_PULL);
    assert_close(r.request_bytes_per_token, 160, 1e-12);
    assert_close(r.response_bytes_per_token, 1120, 1e-12);

    /* layers and batch scale the per-token numbers as documented */
    in.layers = 3; in.batch_tokens = 2;
    r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    /* per round: 2*(48 + 2*80) = 416 request, 96 + 2*256 = 608 response */
    assert_close(r.request_bytes_per_token, 3 * 416 / 2.0, 1e-12);
    assert_close(r.response_bytes_per_token, 3 * 608 / 2.0, 1e-12);
    assert_close(r.messages_per_token, 3 * 4 / 2.0, 0);
    assert_close(r.pairs_per_token, 12, 0);
}

static void test_small_case_latency_memory(void **state)
{
    (void)state;
    us_plan_input in = small_case();
    us_plan_result r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_close(r.t_msg_s, 4e-6, 1e-12);
    assert_close(r.t_net_s, 20.752e-6, 1e-9);
    assert_close(r.t_gather_s, (2 + sqrt(4 * log(2.0))) * 356e-9, 1e-9);
    assert_close(r.t_merge_s, 0.48e-6, 1e-9);
    assert_close(r.round_latency_s, 26.53677888e-6, 1e-8);
    assert_close(r.token_latency_s, r.round_latency_s, 1e-12);
    assert_close(r.tokens_per_s_per_coordinator, 1.0 / 26.53677888e-6, 1e-8);
    assert_close(r.table_bytes, 2.56e8, 1e-12);
    assert_close(r.memory_per_rank_bytes, 145439092.458 + 11096.122 + 752, 1e-9);

    r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    assert_close(r.memory_per_rank_bytes, 128020148, 1e-12);
    /* column: every shard reads all 4 pairs at 32 columns = 128 B, 1 core */
    assert_close(r.t_gather_s, 4 * (100e-9 + 128e-9), 1e-9);
}

/* Planning: the chosen shard count meets the limit and one fewer does not. */
static void test_limits_at_boundary(void **state)
{
    (void)state;
    us_plan_input in;
    us_plan_defaults(&in);
    in.values = 1e9; in.dim = 256; in.dtype = US_DTYPE_F32;
    in.node_memory_bytes = 64.0 * (1ull << 30); in.headroom = 0.25;
    in.target_tokens_per_s = 1;           /* memory decides */
    /* column, by hand: ceil(256/S) * 4e9 B <= 48 GiB => ceil(256/S) <= 12 => S = 22 */
    us_plan_result r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    assert_int_equal(r.shards_for_memory, 22);
    assert_int_equal(r.shards, 22);
    assert_string_equal(r.limit, "memory");
    assert_true(r.node_memory_used_bytes <= 48.0 * (1ull << 30));
    in.shards = 21;
    r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    assert_true(r.node_memory_used_bytes > 48.0 * (1ull << 30));

    /* row placement: same property at its own answer */
    in.shards = 0;
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    uint32_t s = r.shards_for_memory;
    assert_true(s >= 21 && s <= 25);       /* 1.024e12 / 48 GiB = 19.9, plus imbalance */
    assert_true(r.node_memory_used_bytes <= 48.0 * (1ull << 30));
    in.shards = s - 1;
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_true(r.node_memory_used_bytes > 48.0 * (1ull << 30));

    /* compute, by hand: 1e6 tok/s * 2 layers * 16 pairs / S * (100 ns + 1024 B / 1 GB/s)
     * <= 4 cores * 0.5  =>  S >= 17.984 => 18 */
    us_plan_defaults(&in);
    in.values = 1e6; in.dim = 256; in.dtype = US_DTYPE_F32;
    in.layers = 2; in.heads = 2; in.k = 8; in.cores = 4; in.max_util = 0.5;
    in.row_ns = 100; in.gather_bytes_per_s = 1e9; in.target_tokens_per_s = 1e6;
    in.nic_bytes_per_s = 1e15;            /* network never limits */
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_int_equal(r.shards_for_compute, 18);
    assert_int_equal(r.shards, 18);
    assert_string_equal(r.limit, "compute");

    /* network: the planned count carries the target, one fewer does not */
    us_plan_defaults(&in);
    in.target_tokens_per_s = 2e5; in.nic_bytes_per_s = 1e9;
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    s = r.shards_for_network;
    assert_true(s > 1);
    in.shards = s;
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_true(in.target_tokens_per_s * r.shard_net_bytes_per_token <= 1e9 * in.max_util);
    in.shards = s - 1;
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_true(in.target_tokens_per_s * r.shard_net_bytes_per_token > 1e9 * in.max_util);
}

/* Column placement sends every pair to every shard: a shard's request bytes
 * per token (layers * P * 20) never shrink, so a high target is unreachable. */
static void test_unreachable(void **state)
{
    (void)state;
    us_plan_input in;
    us_plan_defaults(&in);   /* 2 layers x 64 pairs x 20 B = 2560 B per token per shard */
    in.nic_bytes_per_s = 1e9; in.max_util = 1;
    in.target_tokens_per_s = 1e9 / 2560.0 * 1.01;
    us_plan_result r = compute(&in, US_PLAN_COLUMN, US_PLAN_PUSH);
    assert_string_equal(r.limit, "unreachable:network");
    assert_int_equal(r.shards_for_network, 0);
    /* row placement spreads the same bytes: reachable */
    r = compute(&in, US_PLAN_ROW, US_PLAN_PUSH);
    assert_true(strncmp(r.limit, "unreachable", 11) != 0);
    assert_true(r.shards_for_network > 1);
}

static void test_validation(void **state)
{
    (void)state;
    us_plan_input good;
    us_plan_defaults(&good);
    us_err err = {0};
    assert_int_equal(us_plan_validate(&good, &err), US_OK);
    /* each case breaks one field; the message must name it */
    static const char *const field[] = {
        "values", "dim", "ranks per node", "headroom", "unique fraction", "target",
    };
    us_plan_input in;
    for (size_t i = 0; i < sizeof field / sizeof field[0]; i++) {
        in = good;
        switch (i) {
        case 0: in.values = 0; break;
        case 1: in.dim = 0; break;
        case 2: in.ranks_per_node = in.cores + 1; break;
        case 3: in.headroom = 1.0; break;
        case 4: in.unique_fraction = 0; break;
        case 5: in.target_tokens_per_s = NAN; break;
        }
        us_err_clear(&err);
        assert_int_equal(us_plan_validate(&in, &err), US_EINVAL);
        if (strstr(err.msg, field[i]) == NULL)
            fail_msg("case %zu: message '%s' does not name '%s'", i, err.msg, field[i]);
        /* compute refuses too and leaves the result untouched */
        us_plan_result r;
        memset(&r, 0x5a, sizeof r);
        unsigned char before[sizeof r];
        memcpy(before, &r, sizeof r);
        assert_int_equal(us_plan_compute(&in, US_PLAN_ROW, US_PLAN_PUSH, &r, &err), US_EINVAL);
        assert_memory_equal(&r, before, sizeof r);
    }
    assert_int_equal(us_plan_compute(&good, (us_plan_placement)7, US_PLAN_PUSH, NULL, &err),
                     US_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distinct_shards),
        cmocka_unit_test(test_small_case_bytes),
        cmocka_unit_test(test_small_case_latency_memory),
        cmocka_unit_test(test_limits_at_boundary),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
