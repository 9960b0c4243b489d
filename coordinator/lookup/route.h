/*
 * route.h — where each (token, row, weight) of a batch goes, and what it costs.
 *
 * Pure bookkeeping, no MPI: a lookup batch (n_tokens x k pairs from top-k) is
 *   1. deduplicated: every distinct row gets one unique index (first-seen
 *      order), so a row wanted by several tokens is sent/read once;
 *   2. assigned: each unique row goes to its owner shard by placement
 *      (row placement: block = row >> block_bits, owner = us_placement_shard,
 *      remembered per block in a direct-mapped cache)
 *      or, for column placement, to every shard (each holds a column slice
 *      of every row); rows already held locally (coordinator cache) go
 *      nowhere;
 *   3. encoded: one wire request per shard (proto/wire.h) — PUSH (pairs +
 *      unique rows, tokens renumbered densely per shard, token map kept for
 *      the merge), ROWS (unique rows only, for pull over messages) or NOP.
 * The cost model compares push-down and pull for a routed batch from the
 * counts alone (bytes moved and messages), so the choice is deterministic
 * and unit-testable.
 *
 * A us_route owns its arrays and reuses them across batches (grown on
 * demand); us_route_free releases them.
 */
#ifndef US_ROUTE_H
#define US_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"
#include "proto/column.h"
#include "proto/wire.h"

typedef enum us_placement_kind {
    US_PLACE_ROW = 0,      /* whole blocks per shard, by jump hash */
    US_PLACE_COLUMN = 1,   /* every shard holds a column slice of every row */
} us_placement_kind;

/* What coordinators know about a table (from the store manifest). */
typedef struct us_table_info {
    uint32_t table_id;
    uint64_t rows;
    uint32_t dim;
    us_dtype dtype;
    uint32_t block_bits;
    uint64_t placement_seed;
    us_placement_kind placement;
} us_table_info;

/* Returns: the bytes of one stored row of `cols` columns as sent on the wire
 * (elements only). */
static inline uint64_t us_table_row_bytes(const us_table_info *t, uint32_t cols)
{
    return (uint64_t)cols * us_dtype_size(t->dtype);
}

typedef struct us_route {
    /* the batch (borrowed during build/encode) */
    uint32_t n_tokens, k;
    const uint64_t *rows;
    /* dedupe */
    uint32_t  n_unique;
    uint64_t *uniq_rows;     /* [n_unique] */
    uint32_t *pair_uidx;     /* [n_tokens * k] -> unique index */
    int32_t  *uniq_owner;    /* [n_unique] shard index; -1 = local; -2 = all (column) */
    uint32_t *uniq_ref;      /* [n_unique] index in its shard's row list */
    /* per shard, after assign */
    int       n_shards;
    uint32_t *shard_rows, *shard_pairs, *shard_tokens;   /* [n_shards] */
    uint32_t *tok_map;       /* shard s's local token j -> batch token, at tok_off[s] + j */
    uint64_t *tok_off;       /* [n_shards + 1] */
    uint32_t  n_local;       /* unique rows held locally */
    /* capacities and hash scratch */
    uint64_t  pair_cap, uniq_cap, hash_cap, tok_cap;
    int       shard_cap;
    uint64_t *hash_slots;    /* [hash_cap]: (stamp << 32) | unique index; a slot
                              * whose stamp is not hash_stamp is empty, so the
                              * table is cleared by bumping the stamp */
    uint32_t  hash_stamp;
    uint32_t *shard_last;    /* [n_shards] scratch: last token seen per shard */
    void     *enc_state;     /* [n_shards] scratch: per-shard write cursors (encode) */
    void     *enc_req;       /* [n_shards] scratch: us_wire_req views (encode) */
    /* block -> owner, direct-mapped (rows of one block share their owner,
     * and jump hash costs ~60 instructions); valid for owner_key's table,
     * seed and shard count */
    uint64_t *owner_tag;     /* [US_ROUTE_OWNER_SLOTS]: block + 1, 0 = empty */
    int32_t  *owner_val;     /* [US_ROUTE_OWNER_SLOTS] */
    uint64_t  owner_key[3];  /* table_id, placement_seed, n_shards */
} us_route;

/* Slots of the block -> owner cache (a power of two): every block of a
 * table of up to this many blocks stays cached. */
#define US_ROUTE_OWNER_SLOTS 8192u

/* Deduplicates rows[n_tokens * k] (each < t->rows).
 * Returns: US_OK; US_ERANGE naming the token and pair of a row beyond the
 * table, or for a batch too big to index; US_ENOMEM. */
int us_route_dedupe(us_route *r, const us_table_info *t, const uint64_t *rows,
                    uint32_t n_tokens, uint32_t k, us_err *err);

/* Assigns unique rows to shards; local[u] (optional) marks rows the
 * coordinator already holds. Fills per-shard counts and token maps.
 * Returns: US_OK; US_EINVAL for n_shards < 1; US_ENOMEM. */
int us_route_assign(us_route *r, const us_table_info *t, int n_shards,
                    const bool *local, us_err *err);

/* What one round asks of the shards (us_route_encode). */
typedef struct us_route_request {
    uint8_t        mode;       /* US_WIRE_PUSH, US_WIRE_ROWS or US_WIRE_NOP */
    uint8_t        flags;      /* OR-ed into every header (e.g. US_WIRE_F_STOP) */
    uint64_t       batch_id;
    const float   *weights;    /* PUSH: [n_tokens * k], the batch's pair weights */
    const uint8_t *groups;     /* PUSH: NULL, or [n_tokens * k] IVE groups */
    uint32_t       n_groups;
} us_route_request;

/* Appends one request per shard to out (offsets/lengths in off[s], len[s]):
 * mode PUSH with the pairs, ROWS with the unique rows, or NOP. A shard with
 * nothing to do gets a NOP.
 * Returns: US_OK; US_EINVAL before us_route_assign; US_ENOMEM (cursors or
 * growing out). */
int us_route_encode(const us_route *r, const us_table_info *t, const us_route_request *q,
                    us_wire_buf *out, uint64_t *off, uint64_t *len, us_err *err);

/* Frees the route's arrays. Returns: nothing. */
void us_route_free(us_route *r);

/* --- cost model ------------------------------------------------------- */

/* Link parameters; defaults from us_cost_params_default() are rough numbers
 * for this lab (configurable, not measured per job). */
typedef struct us_cost_params {
    double bytes_per_us;        /* link bandwidth */
    double msg_us;              /* fixed cost per two-sided message */
    double read_us;             /* fixed cost per one-sided read (pipelined) */
} us_cost_params;

typedef struct us_cost {
    uint64_t bytes;             /* request + response payload bytes, all shards */
    uint64_t messages;          /* messages + one-sided reads */
    double   est_us;
} us_cost;

/* Returns: the default link parameters. */
us_cost_params us_cost_params_default(void);

/* Costs of serving the routed batch by push-down (PUSH messages) and by
 * pull (rma: one read per unique row and shard; otherwise ROWS messages).
 * Round-keeping NOP messages are counted on both sides. Returns: nothing
 * (the costs are in *push and *pull). */
void us_route_cost(const us_route *r, const us_table_info *t, uint32_t n_groups,
                   bool pull_by_rma, const us_cost_params *p, us_cost *push,
                   us_cost *pull);

#endif
