/*
 * lookup.h — the distributed lookup: route, gather, merge, in rounds.
 *
 * Every rank of the job holds one us_lookup for a table. Work proceeds in
 * collective rounds (each rank calls begin/end the same number of times):
 *
 *   coordinator  begin(batch): dedupe rows, take cached rows (when the cache
 *                gate, gate.h, says the cache pays), route the rest
 *                by placement, pick push-down or pull (forced, or by the cost
 *                model in coordinator/lookup/route.h), encode one request per shard
 *                and start the request exchange (non-blocking: the caller may
 *                score the next batch before calling end).
 *   every rank   end(): finish the request exchange; shards answer what they
 *                received (shard/serve.h); coordinators doing a one-sided
 *                pull read rows now; then the response exchange.
 *   coordinator  ...merge: push-down adds per-token partial sums from all
 *                shards (row placement) or places column slices side by side
 *                (column placement); pull sums the fetched rows itself in the
 *                batch's pair order. Output out[t][g][c] = sum over token t's
 *                pairs i with group g of weights[i] * V[rows[i]][c].
 *
 * Numerics: pull and column-placement push produce exactly the bits of
 * us_gather_sum(_grouped) over the whole table (same pair order, same fused
 * multiply-adds). Row-placement push adds per-shard partials in shard order,
 * so it differs from the single-process sum by float rounding only
 * (tests bound the relative error by 1e-5 for f32).
 *
 * Pull goes by one-sided reads when the transport offers them (fabric after
 * rma_expose; coalesced spans, coordinator/lookup/pull.h), else by ROWS messages
 * (mpi, or opts.pull_by_messages). Coordinators that are not shards
 * pass batch NULL on idle rounds; shard-only ranks call us_lookup_serve,
 * which runs rounds until every coordinator has called us_lookup_finish.
 * A shard's error answer (malformed or out-of-range request, or a block that
 * failed its CRC check: US_ECORRUPT naming table, block and file) makes
 * end() return that error for this batch (naming the shard).
 */
#ifndef US_LOOKUP_H
#define US_LOOKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/lookup/gate.h"
#include "coordinator/lookup/rowcache.h"
#include "coordinator/lookup/route.h"
#include "kernels/rows_view.h"
#include "kernels/us_status.h"
#include "proto/transport.h"
#include "proto/world.h"
#include "shard/serve.h"
#include "shard/store.h"

typedef enum us_lookup_mode {
    US_LOOKUP_AUTO = 0,   /* cost model per batch; pull by ROWS messages, not
                           * one-sided reads, when the transport's reads
                           * wait for the target (rma_manual_progress) */
    US_LOOKUP_PUSH = 1,   /* shards sum */
    US_LOOKUP_PULL = 2,   /* coordinator reads rows and sums */
} us_lookup_mode;

typedef struct us_lookup_opts {
    us_lookup_mode mode;
    uint32_t max_tokens, max_k;  /* batch limits: size the messages */
    uint32_t n_groups;           /* IVE groups; 0 or 1 = none */
    uint64_t cache_bytes;        /* coordinator hot-row cache; 0 = none */
    bool     cache_always;       /* use the cache on every batch; by default a
                                  * gate measures batches with and without it
                                  * and bypasses it while it does not pay
                                  * (gate.h) */
    int      n_threads;          /* gather kernel threads (shard and merge) */
    us_cost_params cost;         /* zero = us_cost_params_default() */
    bool     pull_by_messages;   /* pull with ROWS messages even when the
                                  * transport can read one-sided (one read per
                                  * row is slow on software providers) */
    /* Shard ranks whose `local` view is table store_table of a store: every
     * request's rows are CRC-checked before they are served, and every
     * local block before it is exposed to one-sided reads (shard/store.h).
     * NULL for views not backed by a store (synthetic, tests). */
    const us_store *store;
    size_t   store_table;
    /* A synthetic table served with rows computed on the fly
     * (shard/synth_view.h): shard ranks pass their source and local NULL.
     * Every rank of the job passes a source or none (coordinators' is not
     * read): there are no blocks to expose, so pull goes by ROWS messages. */
    us_synth_source *synth;
} us_lookup_opts;

typedef struct us_lookup_batch {
    uint32_t n_tokens, k;
    const uint64_t *rows;        /* [n_tokens * k] */
    const float    *weights;     /* [n_tokens * k] */
    const uint8_t  *groups;      /* NULL, or [n_tokens * k] in [0, n_groups) */
} us_lookup_batch;

typedef struct us_lookup_stats {
    uint64_t rounds, batches, push_batches, pull_batches;
    uint64_t tokens, pairs, unique_rows, local_rows;
    uint64_t shard_errors;       /* error answers received */
    uint64_t est_push_bytes, est_pull_bytes; /* cost model, summed over batches */
    uint64_t cache_batches;      /* batches that used the cache (gate said on) */
} us_lookup_stats;

typedef struct us_lookup us_lookup;

/* Largest message of a job with these limits: open the transport with it.
 * Returns: the byte count (cannot fail). */
uint64_t us_lookup_max_msg_bytes(const us_table_info *table, const us_lookup_opts *opts,
                                 int n_shards);

/* Collective. local is this rank's view when it is a shard (its blocks, or
 * its column slice for column placement), else NULL. With a fabric
 * transport, shards expose their blocks for one-sided reads; a transport
 * exposes one table at a time, so further lookups opened on the same
 * transport while the first is open pull with ROWS messages instead.
 * Returns: US_OK with *out set; US_EINVAL for a view that does not match the
 * table or this rank's role, or bad limits (naming them); US_ENOMEM;
 * US_EMPI / US_EFABRIC when the transport's exposure of the blocks fails
 * (collective: the job cannot go on). *out is NULL on error. */
int us_lookup_open(us_lookup **out, const us_world *world, us_transport *t,
                   const us_table_info *table, const us_rows_view *local,
                   const us_lookup_opts *opts, us_err *err);

/* The batch's arrays are borrowed until end() returns: score the next batch
 * into other buffers (double-buffer) between begin and end.
 * begin fails only when the round could not start (transport, memory): the
 * job cannot go on. A bad batch (row out of range, too many tokens) still
 * starts the round, with NOPs, and end() returns the error.
 * Returns: US_OK (the round started); US_EINVAL when called inside a round or
 * with a batch on a rank that is not a coordinator; US_ENOMEM; US_EMPI /
 * US_EFABRIC from the transport. */
int us_lookup_begin(us_lookup *L, const us_lookup_batch *batch, us_err *err);
/* out: [n_tokens][n_groups][dim] floats of the batch given to begin (NULL on
 * ranks that passed no batch).
 * Returns: US_OK; for this batch only (the round completed, the job goes on):
 * US_EINVAL / US_ERANGE for a batch refused before sending (too many tokens,
 * bad group, row out of range), a shard's error answer with its code
 * (US_EPROTO, US_ERANGE, US_ENOTFOUND, naming the shard), US_EINVAL for a
 * batch without an output buffer; US_EPROTO for an unreadable answer,
 * US_EMPI / US_EFABRIC from the transport, US_ENOMEM (the job cannot go on). */
int us_lookup_end(us_lookup *L, float *out, us_err *err);
/* Non-blocking end: advances the round as far as it can without waiting
 * (a one-sided pull's reads are waited for) and sets *done when it is
 * complete, with the same results as end(). A service loop calls it between
 * polls of its sockets.
 * Returns: as us_lookup_end (*done false on error); US_EINVAL without a
 * begun round. */
int us_lookup_progress(us_lookup *L, float *out, bool *done, us_err *err);
/* begin + end.
 * Returns: as us_lookup_begin, then as us_lookup_end. */
int us_lookup_run(us_lookup *L, const us_lookup_batch *batch, float *out, us_err *err);

/* Shard-only ranks: serve rounds until all coordinators finished. Requests
 * a shard rejects are answered with an error and serving goes on.
 * Returns: US_OK once every coordinator has finished; US_EINVAL on a
 * coordinator rank; US_EMPI / US_EFABRIC / US_ENOMEM (the job cannot go on). */
int us_lookup_serve(us_lookup *L, us_err *err);
/* Coordinators: send STOP rounds (serving as a shard too when this rank is
 * one) until every coordinator has stopped.
 * Returns: US_OK; US_EMPI / US_EFABRIC / US_ENOMEM from a round (the job
 * cannot go on: abort it). On a shard-only rank it serves (us_lookup_serve). */
int us_lookup_finish(us_lookup *L, us_err *err);

/* Coordinators: one STOP round (what us_lookup_finish repeats until every
 * coordinator has stopped); a driver that interleaves several lookups
 * (coordinator/lookup/pipe.h) runs them one round at a time.
 * Returns: as us_lookup_finish for one round. */
int us_lookup_stop_round(us_lookup *L, us_err *err);

/* Tests and tools: one round with caller-made request messages for each
 * shard (msgs + off[s], len[s]); afterwards us_lookup_raw_answer gives shard
 * s's raw response. Coordinators only; others call us_lookup_serve.
 * Returns: US_OK (shards' error answers are in the raw answers, not here);
 * US_EINVAL on a non-coordinator or inside a round; US_ENOMEM; US_EMPI /
 * US_EFABRIC from the transport. */
int us_lookup_raw_round(us_lookup *L, const void *msgs, const uint64_t *off,
                        const uint64_t *len, us_err *err);
/* Returns: shard s's raw answer of the last raw round (*len bytes, valid
 * until the next round), or *len = 0 when it sent none. */
const void *us_lookup_raw_answer(const us_lookup *L, int shard, uint64_t *len);

/* True once every coordinator has stopped and this rank saw it (serve and
 * finish return then); a driver that interleaves several lookups uses it.
 * Returns: that truth value (cannot fail). */
bool us_lookup_stopped(const us_lookup *L);

/* Forces the mode of later batches (AUTO = cost model).
 * Returns: nothing (cannot fail). */
void us_lookup_set_mode(us_lookup *L, us_lookup_mode mode);
/* Returns: the mode used by the last batch (PUSH or PULL). */
us_lookup_mode us_lookup_last_mode(const us_lookup *L);
/* Returns: the counters since open (owned by L, valid until close). */
const us_lookup_stats *us_lookup_get_stats(const us_lookup *L);
/* Returns: the hot-row cache (owned by L), or NULL when disabled. */
const us_rowcache *us_lookup_cache(const us_lookup *L);
/* Returns: the column count of this rank's answers/view (its column slice
 * under column placement, else the table's dim). */
uint32_t us_lookup_out_dim(const us_lookup *L);

/* Frees L and withdraws its one-sided exposure (not collective; NULL is a
 * no-op). Returns: nothing. */
void us_lookup_close(us_lookup *L);

#endif
