/*
 * plan.h — capacity planner: how many shards, how much memory, how many bytes.
 *
 * An analytical model, no measurement and no MPI: given a memory table
 * (values x dim x dtype), the lookup shape (memory layers x heads x top-k
 * pairs per token), a batch size, a target tokens/s and node specs, it
 * predicts for each placement (row, column) and each gather mode (push-down,
 * pull) the shards needed, memory per rank, network bytes and messages per
 * token, and the latency of one lookup round. The byte counts follow the wire
 * format of the lookup path (48-byte request/response headers; per unique row
 * 8 bytes; per pair token 4 + ref 4 + weight 4 (+1 group byte with IVE);
 * push answers per (token, group) f32 sums of the shard's columns; pull
 * answers raw stored rows, int8 with a 4-byte scale), so the prediction can be
 * checked against measured runs (tests/bench/plan_check.sh).
 *
 * Symbols: V values, d dim, e bytes per element, R = d*e (+4 for int8) bytes
 * per stored row, L memory layers, P = heads*k pairs per token and layer,
 * B tokens per round, S shards, G IVE groups, u unique fraction of the pairs
 * (1 = no duplicate rows in a round, the uniform-key case).
 *
 *   row placement      a token's P pairs land on D = S(1 - (1 - 1/S)^P)
 *                      distinct shards on average (uniform keys)
 *     push   request   S*48 + B*P*(8u + 12 [+1])       response S*48 + B*D*G*d*4
 *     pull   request   S*48 + 8*u*B*P                  response S*48 + u*B*P*R
 *   column placement   every shard holds d/S columns of every row and gets
 *                      every pair (indices are broadcast: Meta's layout)
 *     push   request   S*(48 + B*P*(8u + 12 [+1]))     response S*48 + B*G*d*4
 *     pull   request   S*(48 + 8*u*B*P)                response S*48 + u*B*P*R
 *   messages per round 2S (every shard gets a request, NOP when idle, and answers)
 *
 * Time of one round (one layer, B tokens), all on the coordinator's critical path:
 *   t_msg    = 2S * msg_overhead             software cost per message
 *   t_net    = 2 * nic_latency + (request + response bytes) / nic_bandwidth
 *   t_gather = the busiest shard's rows * t_row(row bytes it reads) / cores per rank
 *              (push: summed at the shard; pull: copied at the shard)
 *   t_merge  = bytes the coordinator sums / gather_bandwidth (pull sums every
 *              fetched row; push adds the partial sums)
 *   t_row(b) = row_ns + b / gather_bandwidth  (a random row: one DRAM miss,
 *              then streaming; measured: LAB.md "random rows summed")
 * Token latency = L rounds (layers looked up one after the other, no overlap:
 * conservative). One coordinator serves B / (L * t_round) tokens/s.
 *
 * Shards needed for the target (smallest S meeting all three):
 *   memory   ranks_per_node * memory_per_rank(S) <= node_memory * (1 - headroom)
 *            memory_per_rank = table / S * (1 + imbalance) + block metadata
 *            + message buffers; imbalance = 3 / sqrt(blocks per shard) for row
 *            placement (3 sigma of the jump-hash block count), 0 for column
 *   compute  target * L * (pairs a shard sums per token) * t_row <= cores * max_util
 *   network  target * (bytes a shard sends + receives per token) <= nic * max_util
 * Column placement's per-shard request bytes do not shrink with S (every
 * shard gets every pair), so a target can be unreachable: the result then
 * says which limit failed (limit = "unreachable:network").
 *
 * Not modelled: dedupe of Zipf keys (use unique_fraction), the hot-row
 * cache, overlap of rounds, stragglers, protocol headers below MPI.
 */
#ifndef US_PLAN_H
#define US_PLAN_H

#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"

typedef enum us_plan_placement {
    US_PLAN_ROW = 0,
    US_PLAN_COLUMN = 1,
} us_plan_placement;

typedef enum us_plan_mode {
    US_PLAN_PUSH = 0,
    US_PLAN_PULL = 1,
} us_plan_mode;

#define US_PLAN_HDR_BYTES 48.0   /* request and response header of proto/wire.h */
#define US_PLAN_MAX_SHARDS 1000000

typedef struct us_plan_input {
    double   values;              /* rows over all memory tables */
    uint32_t dim;
    us_dtype dtype;
    uint32_t layers;              /* memory layers; a token looks up in each */
    uint32_t heads, k;            /* pairs per token and layer = heads * k */
    uint32_t groups;              /* IVE groups (push sums per group); 1 = none */
    uint32_t batch_tokens;        /* tokens per lookup round */
    uint32_t block_bits;          /* rows per block = 2^block_bits */
    double   unique_fraction;     /* distinct rows / pairs in a round, (0, 1] */
    double   target_tokens_per_s;
    /* node */
    double   node_memory_bytes;
    double   nic_bytes_per_s;
    double   nic_latency_s;       /* one way */
    uint32_t cores;               /* per node */
    uint32_t ranks_per_node;      /* shard ranks per node */
    double   headroom;            /* fraction of node memory left free, [0, 1) */
    double   max_util;            /* planned utilisation of cores and NIC, (0, 1] */
    /* software costs (measure with the benchmarks; defaults from LAB.md) */
    double   msg_overhead_s;      /* per message */
    double   row_ns;              /* fixed cost of one random row */
    double   gather_bytes_per_s;  /* streaming part of a row read / sum */
    uint32_t shards;              /* 0 = plan for the target; else predict at S */
} us_plan_input;

typedef struct us_plan_result {
    us_plan_placement placement;
    us_plan_mode mode;
    uint32_t shards, nodes;
    uint32_t shards_for_memory, shards_for_compute, shards_for_network;
    const char *limit;                 /* "memory", "compute", "network", "fixed",
                                          or "unreachable:<what>" */
    double table_bytes;
    double memory_per_rank_bytes;      /* slice + metadata + buffers */
    double node_memory_used_bytes;     /* ranks_per_node * memory_per_rank */
    double pairs_per_token;            /* L * P */
    double shards_per_token_layer;     /* D (row) or S (column) */
    double request_bytes_per_token;    /* coordinator -> shards, all layers */
    double response_bytes_per_token;   /* shards -> coordinator, all layers */
    double net_bytes_per_token;
    double messages_per_token;
    double shard_net_bytes_per_token;  /* one shard's NIC, both directions */
    double t_msg_s, t_net_s, t_gather_s, t_merge_s;
    double round_latency_s;            /* one layer, batch_tokens tokens */
    double token_latency_s;            /* L rounds */
    double tokens_per_s_per_coordinator;
    uint32_t coordinators;             /* to reach the target */
} us_plan_result;

/* Defaults: one bf16 table of 1e9 x 512, 2 layers x 2 heads x k 32, batch 64,
 * block_bits 12, unique 1, target 1e4 tokens/s, nodes of 256 GiB, 25 Gbit/s,
 * 5 us, 32 cores, 1 rank per node, headroom 0.25, max_util 0.7, message
 * overhead 2 us, row 80 ns + 7.5 GB/s (fit to LAB.md's 1-thread random rows).
 * Returns: nothing. */
void us_plan_defaults(us_plan_input *in);

/* Returns: US_OK, or US_EINVAL naming the first bad field and its allowed range. */
int us_plan_validate(const us_plan_input *in, us_err *err);

/* Fills *out for one placement and mode (validates first; *out unchanged on
 * error). A target that no shard count reaches is not an error: limit starts
 * with "unreachable".
 * Returns: US_OK; US_EINVAL for a bad input field (named), an unknown
 * placement or mode, or a NULL out. */
int us_plan_compute(const us_plan_input *in, us_plan_placement placement,
                    us_plan_mode mode, us_plan_result *out, us_err *err);

/* Returns: the expected distinct shards among `pairs` uniform draws over S shards. */
double us_plan_distinct_shards(double pairs, double shards);

/* Returns: the bytes of one stored row as read or sent (int8 includes its
 * 4-byte scale). */
double us_plan_row_bytes(uint32_t dim, us_dtype dtype);

/* Returns: the static name of a placement / mode ("row", "push", ...). */
const char *us_plan_placement_name(us_plan_placement p);
const char *us_plan_mode_name(us_plan_mode m);

#endif
