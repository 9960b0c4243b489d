/*
 * plan.c — the capacity planner's arithmetic (model and symbols: plan.h).
 *
 * Everything is double precision: counts reach 1e11 values x 1e3 bytes, well
 * inside a double's exact integer range, and the outputs are estimates.
 * Each shard-count limit is a monotone predicate in S (more shards never
 * need more memory, work or bytes per shard), so the smallest S that meets
 * it is found by doubling then bisection.
 */
#include "coordinator/plan/plan.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

void us_plan_defaults(us_plan_input *in)
{
    *in = (us_plan_input){
        .values = 1e9, .dim = 512, .dtype = US_DTYPE_BF16,
        .layers = 2, .heads = 2, .k = 32, .groups = 1,
        .batch_tokens = 64, .block_bits = 12, .unique_fraction = 1.0,
        .target_tokens_per_s = 1e4,
        .node_memory_bytes = 256.0 * (1ull << 30),
        .nic_bytes_per_s = 25e9 / 8, .nic_latency_s = 5e-6,
        .cores = 32, .ranks_per_node = 1, .headroom = 0.25, .max_util = 0.7,
        .msg_overhead_s = 2e-6, .row_ns = 80, .gather_bytes_per_s = 7.5e9,
        .shards = 0,
    };
}

const char *us_plan_placement_name(us_plan_placement p)
{
    return p == US_PLAN_ROW ? "row" : p == US_PLAN_COLUMN ? "column" : "?";
}

const char *us_plan_mode_name(us_plan_mode m)
{
    return m == US_PLAN_PUSH ? "push" : m == US_PLAN_PULL ? "pull" : "?";
}

double us_plan_row_bytes(uint32_t dim, us_dtype dtype)
{
    return (double)dim * (double)us_dtype_size(dtype) + (dtype == US_DTYPE_INT8 ? 4.0 : 0.0);
}

double us_plan_distinct_shards(double pairs, double shards)
{
    if (shards <= 1.0)
        return pairs > 0 ? 1.0 : 0.0;
    /* S (1 - (1 - 1/S)^n), with log1p/expm1 so huge S stays accurate */
    return -shards * expm1(pairs * log1p(-1.0 / shards));
}

#define CHECK(cond, ...) \
    do { if (!(cond)) return us_err_set(err, US_EINVAL, __VA_ARGS__); } while (0)

int us_plan_validate(const us_plan_input *in, us_err *err)
{
    CHECK(in != NULL, "plan: no input");
    CHECK(isfinite(in->values) && in->values >= 1 && in->values <= 1e13,
          "values %g out of range [1, 1e13]", in->values);
    CHECK(in->dim >= 1 && in->dim <= 65536, "dim %u out of range [1, 65536]", in->dim);
    CHECK(us_dtype_name(in->dtype) != NULL, "dtype %d unknown", (int)in->dtype);
    CHECK(in->layers >= 1 && in->layers <= 1024, "layers %u out of range [1, 1024]", in->layers);
    CHECK(in->heads >= 1 && in->heads <= 1024, "heads %u out of range [1, 1024]", in->heads);
    CHECK(in->k >= 1 && in->k <= 65536, "k %u out of range [1, 65536]", in->k);
    CHECK(in->groups >= 1 && in->groups <= 256, "groups %u out of range [1, 256]", in->groups);
    CHECK(in->batch_tokens >= 1 && in->batch_tokens <= (1u << 24),
          "batch %u out of range [1, 16777216]", in->batch_tokens);
    CHECK(in->block_bits <= 30, "block_bits %u out of range [0, 30]", in->block_bits);
    CHECK(in->unique_fraction > 0 && in->unique_fraction <= 1,
          "unique fraction %g out of range (0, 1]", in->unique_fraction);
    CHECK(isfinite(in->target_tokens_per_s) && in->target_tokens_per_s > 0,
          "target tokens/s %g must be > 0", in->target_tokens_per_s);
    CHECK(isfinite(in->node_memory_bytes) && in->node_memory_bytes >= (1 << 20),
          "node memory %g bytes must be >= 1 MiB", in->node_memory_bytes);
    CHECK(isfinite(in->nic_bytes_per_s) && in->nic_bytes_per_s > 0,
          "NIC bandwidth %g bytes/s must be > 0", in->nic_bytes_per_s);
    CHECK(isfinite(in->nic_latency_s) && in->nic_latency_s >= 0 && in->nic_latency_s < 10,
          "NIC latency %g s out of range [0, 10)", in->nic_latency_s);
    CHECK(in->cores >= 1 && in->cores <= 65536, "cores %u out of range [1, 65536]", in->cores);
    CHECK(in->ranks_per_node >= 1 && in->ranks_per_node <= in->cores,
          "ranks per node %u out of range [1, cores = %u]", in->ranks_per_node, in->cores);
    CHECK(in->headroom >= 0 && in->headroom < 1, "headroom %g out of range [0, 1)", in->headroom);
    CHECK(in->max_util > 0 && in->max_util <= 1, "max util %g out of range (0, 1]", in->max_util);
    CHECK(isfinite(in->msg_overhead_s) && in->msg_overhead_s >= 0 && in->msg_overhead_s < 1,
          "message overhead %g s out of range [0, 1)", in->msg_overhead_s);
    CHECK(isfinite(in->row_ns) && in->row_ns >= 0 && in->row_ns < 1e9,
          "row cost %g ns out of range [0, 1e9)", in->row_ns);
    CHECK(isfinite(in->gather_bytes_per_s) && in->gather_bytes_per_s > 0,
          "gather bandwidth %g bytes/s must be > 0", in->gather_bytes_per_s);
    CHECK(in->shards <= US_PLAN_MAX_SHARDS, "shards %u out of range [0, %d]",
          in->shards, US_PLAN_MAX_SHARDS);
    return US_OK;
}

/* Per-token and per-round quantities at a given S (no limits applied). */
typedef struct plan_at {
    double req_round, resp_round;      /* bytes at the coordinator, one round */
    double distinct;                   /* D: shards per token and layer */
    double shard_pairs_token;          /* rows a shard reads per token (all layers, mean) */
    double shard_row_bytes;            /* bytes of each such read */
    double merge_bytes_round;          /* bytes the coordinator sums per round */
    double slice_bytes, meta_bytes, buffer_bytes;
} plan_at;

static double t_row_s(const us_plan_input *in, double bytes)
{
    return in->row_ns * 1e-9 + bytes / in->gather_bytes_per_s;
}

static void plan_eval(const us_plan_input *in, us_plan_placement pl, us_plan_mode mode,
                      double S, plan_at *a)
{
    const double B = in->batch_tokens, P = (double)in->heads * in->k, u = in->unique_fraction;
    const double d = in->dim, G = in->groups, R = us_plan_row_bytes(in->dim, in->dtype);
    const double pair_bytes = 8.0 * u + 12.0 + (in->groups > 1 ? 1.0 : 0.0);
    const double hdr = US_PLAN_HDR_BYTES, L = in->layers;
    const double rows_per_block = (double)(1ull << in->block_bits);
    const double n_blocks = ceil(in->values / rows_per_block);

    if (pl == US_PLAN_ROW) {
        a->distinct = us_plan_distinct_shards(P, S);
        if (mode == US_PLAN_PUSH) {
            a->req_round = S * hdr + B * P * pair_bytes;
            a->resp_round = S * hdr + B * a->distinct * G * d * 4.0;
            a->merge_bytes_round = B * a->distinct * G * d * 4.0;
            a->shard_pairs_token = L * P / S;
        } else {
            a->req_round = S * hdr + 8.0 * u * B * P;
            a->resp_round = S * hdr + u * B * P * R;
            a->merge_bytes_round = B * P * R;
            a->shard_pairs_token = L * P * u / S;
        }
        a->shard_row_bytes = R;
        /* the busiest shard's blocks: mean + 3 sigma of a binomial count */
        double bps = n_blocks / S;
        double max_blocks = S > 1 ? fmin(n_blocks, bps + 3.0 * sqrt(bps)) : n_blocks;
        a->slice_bytes = fmin(max_blocks * rows_per_block, in->values) * R;
        a->meta_bytes = max_blocks * 20.0;      /* row pointer, scale pointer, crc */
    } else {
        double cols = ceil(d / S);
        double slice_row = cols * us_dtype_size(in->dtype) + (in->dtype == US_DTYPE_INT8 ? 4.0 : 0.0);
        a->distinct = S;
        if (mode == US_PLAN_PUSH) {
            a->req_round = S * (hdr + B * P * pair_bytes);
            a->resp_round = S * hdr + B * G * d * 4.0;
            a->merge_bytes_round = B * G * d * 4.0;
            a->shard_pairs_token = L * P;
        } else {
            a->req_round = S * (hdr + 8.0 * u * B * P);
            a->resp_round = S * hdr + u * B * P * R;
            a->merge_bytes_round = B * P * R;
            a->shard_pairs_token = L * P * u;
        }
        a->shard_row_bytes = slice_row;
        a->slice_bytes = in->values * slice_row;
        a->meta_bytes = n_blocks * 20.0;
    }
    /* one round's request and answer at this shard, double-buffered */
    a->buffer_bytes = 2.0 * (a->req_round + a->resp_round) / S;
}

static double cores_per_rank(const us_plan_input *in)
{
    return (double)in->cores / in->ranks_per_node;
}

typedef enum { LIM_MEMORY, LIM_COMPUTE, LIM_NETWORK } plan_limit;

static bool plan_fits(const us_plan_input *in, us_plan_placement pl, us_plan_mode mode,
                      double S, plan_limit lim)
{
    plan_at a;
    plan_eval(in, pl, mode, S, &a);
    switch (lim) {
    case LIM_MEMORY:
        return in->ranks_per_node * (a.slice_bytes + a.meta_bytes + a.buffer_bytes) <=
               in->node_memory_bytes * (1.0 - in->headroom);
    case LIM_COMPUTE:
        return in->target_tokens_per_s * a.shard_pairs_token * t_row_s(in, a.shard_row_bytes) <=
               cores_per_rank(in) * in->max_util;
    case LIM_NETWORK: {
        double per_token = in->layers * (a.req_round + a.resp_round) / in->batch_tokens / S;
        return in->target_tokens_per_s * per_token * in->ranks_per_node <=
               in->nic_bytes_per_s * in->max_util;
    }
    }
    return false;
}

/* Smallest S in [1, US_PLAN_MAX_SHARDS] meeting the limit, or 0 if none does. */
static uint32_t plan_min_shards(const us_plan_input *in, us_plan_placement pl,
                                us_plan_mode mode, plan_limit lim)
{
    uint32_t hi = 1;
    while (!plan_fits(in, pl, mode, hi, lim)) {
        if (hi >= US_PLAN_MAX_SHARDS)
            return 0;
        hi = hi * 2 > US_PLAN_MAX_SHARDS ? US_PLAN_MAX_SHARDS : hi * 2;
    }
    uint32_t lo = hi / 2 + 1;        /* hi/2 failed (or hi == 1) */
    if (hi == 1)
        return 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (plan_fits(in, pl, mode, mid, lim))
            hi = mid;
        else
            lo = mid + 1;
    }
    return hi;
}

int us_plan_compute(const us_plan_input *in, us_plan_placement pl, us_plan_mode mode,
                    us_plan_result *out, us_err *err)
{
    int rc;
    if ((rc = us_plan_validate(in, err)) != US_OK)
        return rc;
    if ((pl != US_PLAN_ROW && pl != US_PLAN_COLUMN) || (mode != US_PLAN_PUSH && mode != US_PLAN_PULL))
        return us_err_set(err, US_EINVAL, "plan: unknown placement %d or mode %d", (int)pl, (int)mode);
    if (out == NULL)
        return us_err_set(err, US_EINVAL, "plan: no result pointer");

    us_plan_result r = { .placement = pl, .mode = mode };
    r.shards_for_memory = plan_min_shards(in, pl, mode, LIM_MEMORY);
    r.shards_for_compute = plan_min_shards(in, pl, mode, LIM_COMPUTE);
    r.shards_for_network = plan_min_shards(in, pl, mode, LIM_NETWORK);
    uint32_t S;
    if (in->shards > 0) {
        S = in->shards;
        r.limit = "fixed";
    } else if (r.shards_for_memory == 0) {
        S = US_PLAN_MAX_SHARDS; r.limit = "unreachable:memory";
    } else if (r.shards_for_compute == 0) {
        S = US_PLAN_MAX_SHARDS; r.limit = "unreachable:compute";
    } else if (r.shards_for_network == 0) {
        S = US_PLAN_MAX_SHARDS; r.limit = "unreachable:network";
    } else {
        S = r.shards_for_memory; r.limit = "memory";
        if (r.shards_for_compute > S) { S = r.shards_for_compute; r.limit = "compute"; }
        if (r.shards_for_network > S) { S = r.shards_for_network; r.limit = "network"; }
    }
    r.shards = S;
    r.nodes = (S + in->ranks_per_node - 1) / in->ranks_per_node;

    plan_at a;
    plan_eval(in, pl, mode, S, &a);
    const double B = in->batch_tokens, L = in->layers;
    r.table_bytes = in->values * us_plan_row_bytes(in->dim, in->dtype);
    r.memory_per_rank_bytes = a.slice_bytes + a.meta_bytes + a.buffer_bytes;
    r.node_memory_used_bytes = in->ranks_per_node * r.memory_per_rank_bytes;
    r.pairs_per_token = L * in->heads * in->k;
    r.shards_per_token_layer = a.distinct;
    r.request_bytes_per_token = L * a.req_round / B;
    r.response_bytes_per_token = L * a.resp_round / B;
    r.net_bytes_per_token = r.request_bytes_per_token + r.response_bytes_per_token;
    r.messages_per_token = L * 2.0 * S / B;
    r.shard_net_bytes_per_token = r.net_bytes_per_token / S;

    /* one round: the busiest shard's share of B tokens' reads */
    double mean_rows = a.shard_pairs_token / L * B;
    double busiest = S > 1 && pl == US_PLAN_ROW
                         ? mean_rows + sqrt(2.0 * mean_rows * log((double)S)) : mean_rows;
    double threads = fmin(cores_per_rank(in), fmax(1.0, busiest));
    r.t_msg_s = 2.0 * S * in->msg_overhead_s;
    r.t_net_s = 2.0 * in->nic_latency_s + (a.req_round + a.resp_round) / in->nic_bytes_per_s;
    r.t_gather_s = busiest * t_row_s(in, a.shard_row_bytes) / threads;
    r.t_merge_s = a.merge_bytes_round / in->gather_bytes_per_s;
    r.round_latency_s = r.t_msg_s + r.t_net_s + r.t_gather_s + r.t_merge_s;
    r.token_latency_s = L * r.round_latency_s;
    r.tokens_per_s_per_coordinator = B / r.token_latency_s;
    double by_time = ceil(in->target_tokens_per_s / r.tokens_per_s_per_coordinator);
    double by_nic = ceil(in->target_tokens_per_s * r.net_bytes_per_token /
                         (in->nic_bytes_per_s * in->max_util));
    double coords = fmax(1.0, fmax(by_time, by_nic));
    r.coordinators = coords > 1e9 ? 1000000000u : (uint32_t)coords;
    *out = r;
    return US_OK;
}
