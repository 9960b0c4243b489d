/* lookup.c — rounds of route / gather / merge (see lookup.h). */
#include "coordinator/lookup/lookup.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/lookup/pull.h"
#include "kernels/gather.h"
#include "kernels/matmul.h"
#include "kernels/stats.h"

struct us_lookup {
    const us_world *w;
    us_transport *t;
    us_table_info table;
    us_lookup_opts opts;
    uint32_t n_groups;
    uint64_t row_bytes;          /* full row, element bytes */
    bool int8;
    /* shard side */
    bool has_server;
    us_server server;
    uint32_t col_begin, col_count; /* this rank's slice (column placement) */
    /* coordinator side */
    us_route route;
    us_read_plan plan;           /* one-sided pull, row placement */
    bool has_cache;
    us_rowcache cache;
    us_gate cache_gate;          /* whether a batch uses the cache (unless cache_always) */
    us_gate mode_gate;           /* AUTO with mapped shards: pull (true) or push */
    bool mode_gated;             /* this round's mode came from mode_gate */
    bool cache_on;               /* this round's batch reads and fills the cache */
    double t_begin;              /* when this round's batch was planned */
    us_lookup_mode mode, last_mode;
    uint64_t batch_id;
    /* round state */
    bool in_round, have_batch, rma_pull, raw, stop_sent;
    bool rma_mine;               /* the transport exposes this lookup's table */
    int pending_rc;              /* a bad batch found by begin, reported by end */
    us_err pending_err;
    int phase;                   /* 0: requests in flight, 1: responses in flight */
    int fetch_rc;                /* one-sided pull of this round */
    us_err fetch_err;
    bool shard_done, coord_done, all_stopped;
    uint8_t wire_mode;
    us_lookup_batch batch;
    us_wire_buf send, resp;
    uint64_t *send_off, *send_len, *resp_off, *resp_len;  /* [world size] */
    uint64_t *shard_off, *shard_len;                       /* [n_shards] scratch */
    bool *coord_stopped;                                   /* [n_coordinators] */
    us_wire_resp *answers;                                 /* [n_shards] scratch */
    /* merge scratch, grown on demand */
    uint64_t uniq_cap, pair_cap;
    bool *local;
    const uint8_t **row_ptr;
    const float **scale_ptr;
    uint64_t *pair_rows;
    float *pair_w, *partial;
    uint64_t partial_cap;
    uint8_t *tok_seen;                                     /* [n_tokens] push merge */
    uint64_t tok_seen_cap;
    uint8_t *staging;
    uint64_t staging_cap;
    const uint8_t **slice_ptr;                             /* column pull, mapped */
    uint64_t slice_cap;
    bool pull_sliced;                                      /* this round summed slices */
    us_lookup_stats stats;
};

uint64_t us_lookup_max_msg_bytes(const us_table_info *table, const us_lookup_opts *opts,
                                 int n_shards)
{
    (void)n_shards;
    uint32_t G = opts->n_groups > 1 ? opts->n_groups : 1;
    uint64_t pairs = (uint64_t)opts->max_tokens * opts->max_k;
    if (pairs > UINT32_MAX / 2)
        pairs = UINT32_MAX / 2;
    uint64_t req = us_wire_req_bytes((uint32_t)pairs, (uint32_t)pairs, G > 1);
    uint64_t push = us_wire_resp_push_bytes(opts->max_tokens, G, table->dim);
    uint64_t rows = us_wire_resp_rows_bytes((uint32_t)pairs, table->dim,
                                            us_dtype_size(table->dtype),
                                            table->dtype == US_DTYPE_INT8);
    uint64_t m = req > push ? req : push;
    m = m > rows ? m : rows;
    return m + sizeof(us_wire_resp_hdr) + US_ERR_MSG_BYTES + 64;
}

static int check_synth(const us_lookup *L, const us_synth_source *src, us_err *err)
{
    const us_table_info *t = &L->table;
    const us_synth_spec *sp = &src->spec;
    if (sp->table_id != t->table_id || sp->dtype != t->dtype || src->cols != L->col_count ||
        sp->rows != t->rows || sp->block_bits != t->block_bits ||
        sp->placement_seed != t->placement_seed || sp->column != (t->placement == US_PLACE_COLUMN))
        return us_err_set(err, US_EINVAL, "lookup: shard %d synthetic source of table %u "
                          "(%u cols, %" PRIu64 " rows) does not match table %u (%u cols, %"
                          PRIu64 " rows) or its placement", L->w->shard_index, sp->table_id,
                          src->cols, sp->rows, t->table_id, L->col_count, t->rows);
    return US_OK;
}

static int check_local_view(const us_lookup *L, const us_rows_view *v, us_err *err)
{
    const us_table_info *t = &L->table;
    if (v == NULL)
        return us_err_set(err, US_EINVAL, "lookup: shard %d has no view of table %u",
                          L->w->shard_index, t->table_id);
    if (v->dtype != t->dtype || v->dim != L->col_count || v->rows != t->rows ||
        v->block_bits != t->block_bits)
        return us_err_set(err, US_EINVAL, "lookup: shard %d view of table %u is %s x %u "
                          "cols, %" PRIu64 " rows, block_bits %u; table says %s, %u cols, "
                          "%" PRIu64 " rows, block_bits %u", L->w->shard_index, t->table_id,
                          us_dtype_name(v->dtype) ? us_dtype_name(v->dtype) : "?", v->dim,
                          v->rows, v->block_bits, us_dtype_name(t->dtype), L->col_count,
                          t->rows, t->block_bits);
    return US_OK;
}

/* One-sided reads bypass the shard's code, so no read can be checked:
 * every local block is checked before the view is exposed. Collective
 * (the expose is): all ranks skip the exposure together when one fails,
 * and the failing shard's message comes out first (us_world_agree). The
 * mpi transport exposes nothing, so it checks nothing here. */
static int check_before_expose(const us_world *world, us_transport *t,
                               const us_lookup_opts *opts, us_err *err)
{
    if (strcmp(t->ops->name, "mpi") == 0)
        return US_OK;
    int rc = US_OK;
    if (world->is_shard && opts->store != NULL)
        rc = us_store_check_table(opts->store, opts->store_table, err);
    return us_world_agree(world, rc, "checking blocks before one-sided exposure", err);
}

static int check_open_args(const us_world *world, const us_table_info *table,
                           const us_lookup_opts *opts, us_err *err)
{
    if (table->dim == 0 || us_dtype_name(table->dtype) == NULL || table->block_bits > 40)
        return us_err_set(err, US_EINVAL, "lookup: table %u: bad dim %u, dtype %d or "
                          "block_bits %u", table->table_id, table->dim, table->dtype,
                          table->block_bits);
    if (table->placement == US_PLACE_COLUMN && table->dim < (uint32_t)world->n_shards)
        return us_err_set(err, US_EINVAL, "lookup: table %u: column placement needs dim "
                          "%u >= %d shards", table->table_id, table->dim, world->n_shards);
    if (opts->max_tokens == 0 || opts->max_k == 0 || opts->n_groups > US_WIRE_MAX_GROUPS)
        return us_err_set(err, US_EINVAL, "lookup: max_tokens %u, max_k %u must be > 0 "
                          "and n_groups %u <= %d", opts->max_tokens, opts->max_k,
                          opts->n_groups, US_WIRE_MAX_GROUPS);
    return US_OK;
}

/* What this rank's roles need: a server over its rows (shard), a row cache
 * (coordinator, when asked for). */
static int open_roles(us_lookup *L, const us_rows_view *local, us_err *err)
{
    const us_world *world = L->w;
    const us_lookup_opts *opts = &L->opts;
    int rc;
    if (world->is_shard) {
        us_wire_limits lim = {
            .max_bytes = us_lookup_max_msg_bytes(&L->table, opts, world->n_shards),
            .max_tokens = opts->max_tokens,
            .max_pairs = opts->max_tokens * opts->max_k,
        };
        if (opts->synth != NULL)
            rc = check_synth(L, opts->synth, err);
        else
            rc = check_local_view(L, local, err);
        if (rc == US_OK && opts->synth != NULL)
            rc = us_server_init_synth(&L->server, world->shard_index, opts->synth, &lim,
                                      opts->n_threads, err);
        else if (rc == US_OK)
            rc = us_server_init(&L->server, L->table.table_id, world->shard_index, local,
                                &lim, opts->n_threads, err);
        if (rc != US_OK)
            return rc;
        L->has_server = true;
        if (opts->store != NULL)
            us_server_attach_store(&L->server, opts->store, opts->store_table);
    }
    if (world->is_coordinator && opts->cache_bytes > 0) {
        if ((rc = us_rowcache_init(&L->cache, opts->cache_bytes, L->row_bytes, err)) != US_OK)
            return rc;
        L->has_cache = true;
        us_gate_init(&L->cache_gate);
    }
    return US_OK;
}

/* One exposed table per transport: the first open lookup owns it; later
 * lookups sharing the transport pull with ROWS messages. Every rank opens
 * and closes lookups in the same order, so all decide alike and the
 * collective expose is entered by all or none. (The mpi backend says
 * EUNSUPP at once.) */
static int expose_rma(us_lookup *L, const us_rows_view *local, us_err *err)
{
    us_transport *t = L->t;
    if (t->rma_owner != NULL || L->opts.synth != NULL)   /* synth: no blocks to expose */
        return US_OK;
    int rc = check_before_expose(L->w, t, &L->opts, err);
    if (rc != US_OK)
        return rc;
    us_err rma_err = {0};
    rc = us_transport_rma_expose(t, L->w->is_shard ? local : NULL, &rma_err);
    if (rc != US_OK && rc != US_EUNSUPP) {
        if (err)
            *err = rma_err;
        return rc;
    }
    if (rc == US_OK && t->rma_ready) {
        t->rma_owner = L;
        L->rma_mine = true;
    }
    return US_OK;
}

int us_lookup_open(us_lookup **out, const us_world *world, us_transport *t,
                   const us_table_info *table, const us_rows_view *local,
                   const us_lookup_opts *opts, us_err *err)
{
    int rc = check_open_args(world, table, opts, err);
    if (rc != US_OK)
        return rc;
    us_lookup *L = calloc(1, sizeof *L);
    if (L == NULL)
        return us_err_set(err, US_ENOMEM, "lookup: state");
    L->w = world;
    L->t = t;
    L->table = *table;
    L->opts = *opts;
    if (L->opts.cost.bytes_per_us <= 0)
        L->opts.cost = us_cost_params_default();
    L->n_groups = opts->n_groups > 1 ? opts->n_groups : 1;
    L->row_bytes = us_table_row_bytes(table, table->dim);
    L->int8 = table->dtype == US_DTYPE_INT8;
    L->mode = opts->mode;
    us_gate_init(&L->mode_gate);
    L->last_mode = US_LOOKUP_PUSH;
    L->col_begin = 0;
    L->col_count = table->dim;
    if (table->placement == US_PLACE_COLUMN && world->is_shard)
        us_column_slice(table->dim, world->n_shards, world->shard_index, &L->col_begin,
                        &L->col_count);
    size_t size = (size_t)world->size;
    L->send_off = calloc(4 * size, sizeof(uint64_t));
    L->shard_off = calloc(2 * (size_t)world->n_shards, sizeof(uint64_t));
    L->coord_stopped = calloc((size_t)world->n_coordinators, sizeof(bool));
    L->answers = calloc((size_t)world->n_shards, sizeof *L->answers);
    if (!L->send_off || !L->shard_off || !L->coord_stopped || !L->answers) {
        rc = us_err_set(err, US_ENOMEM, "lookup: round tables for %zu ranks", size);
        goto fail;
    }
    L->send_len = L->send_off + size;
    L->resp_off = L->send_off + 2 * size;
    L->resp_len = L->send_off + 3 * size;
    L->shard_len = L->shard_off + world->n_shards;
    if ((rc = open_roles(L, local, err)) != US_OK || (rc = expose_rma(L, local, err)) != US_OK)
        goto fail;
    *out = L;
    return US_OK;

fail:
    us_lookup_close(L);
    return rc;
}

static int grow_scratch(us_lookup *L, uint64_t n_unique, uint64_t n_pairs, us_err *err)
{
    if (n_unique > L->uniq_cap) {
        bool *lo = realloc(L->local, n_unique * sizeof *lo);
        if (lo) L->local = lo;
        const uint8_t **rp = realloc(L->row_ptr, n_unique * sizeof *rp);
        if (rp) L->row_ptr = rp;
        const float **sp = realloc(L->scale_ptr, n_unique * sizeof *sp);
        if (sp) L->scale_ptr = sp;
        if (!lo || !rp || !sp)
            return us_err_set(err, US_ENOMEM, "lookup: scratch for %" PRIu64 " rows", n_unique);
        L->uniq_cap = n_unique;
    }
    if (n_pairs > L->pair_cap) {
        uint64_t *pr = realloc(L->pair_rows, n_pairs * sizeof *pr);
        if (pr) L->pair_rows = pr;
        float *pw = realloc(L->pair_w, n_pairs * sizeof *pw);
        if (pw) L->pair_w = pw;
        if (!pr || !pw)
            return us_err_set(err, US_ENOMEM, "lookup: scratch for %" PRIu64 " pairs", n_pairs);
        L->pair_cap = n_pairs;
    }
    return US_OK;
}

static int validate_batch(const us_lookup *L, const us_lookup_batch *b, us_err *err)
{
    if (b->n_tokens == 0 || b->k == 0 || b->n_tokens > L->opts.max_tokens ||
        b->k > L->opts.max_k || b->rows == NULL || b->weights == NULL)
        return us_err_set(err, US_EINVAL, "lookup: batch of %u tokens x %u (limits %u x %u) "
                          "or missing arrays", b->n_tokens, b->k, L->opts.max_tokens,
                          L->opts.max_k);
    if (b->groups != NULL && L->n_groups > 1) {
        for (uint64_t p = 0; p < (uint64_t)b->n_tokens * b->k; p++)
            if (b->groups[p] >= L->n_groups)
                return us_err_set(err, US_EINVAL, "lookup: token %" PRIu64 " pair %" PRIu64
                                  ": group %u >= %u", p / b->k, p % b->k, b->groups[p],
                                  L->n_groups);
    }
    return US_OK;
}

/* Coordinator: route the batch and encode one request per shard. */
static int plan_batch(us_lookup *L, const us_lookup_batch *b, us_err *err)
{
    int rc;
    us_route *r = &L->route;
    L->t_begin = us_now_s();
    L->cache_on = L->has_cache && (L->opts.cache_always || us_gate_next(&L->cache_gate));
    if (L->has_cache)
        L->stats.cache_batches += L->cache_on;
    if ((rc = validate_batch(L, b, err)) != US_OK ||
        (rc = us_route_dedupe(r, &L->table, b->rows, b->n_tokens, b->k, err)) != US_OK ||
        (rc = grow_scratch(L, r->n_unique, (uint64_t)b->n_tokens * b->k, err)) != US_OK)
        return rc;
    if (L->cache_on) {
        us_rowcache_get_many(&L->cache, r->uniq_rows, r->n_unique, L->row_ptr, L->scale_ptr);
        for (uint32_t u = 0; u < r->n_unique; u++)
            L->local[u] = L->row_ptr[u] != NULL;
    }
    /* without a cache nothing is local: no local[] for assign, and the pull
     * scratch is cleared below only for pull batches (push never reads it) */
    if ((rc = us_route_assign(r, &L->table, L->w->n_shards, L->cache_on ? L->local : NULL,
                              err)) != US_OK)
        return rc;
    us_cost push, pull;
    /* AUTO never reads one-sided when the provider's data progress is
     * manual: every read waits for its shard to be scheduled and poll (on
     * this box 0.004-0.018 of the single-process gather, README); pull then
     * goes by ROWS messages. shm's CMA path (proto/transport_fabric.c) does
     * not wait, but still ran at 0.10-0.29x of ROWS pull's tokens/s (page
     * pinning per row, README bench-lookup), so AUTO avoids it too. With
     * every shard's region mapped here (row placement reads in place) pull
     * ran at 2.2x ROWS pull and 1.13-1.19x push (fabric shm, same runs of
     * make bench-lookup) on this 2-core box, but it sums every row on the
     * coordinator's core while push spreads the gather over the shards, and
     * the cost model has no compute term: there AUTO measures instead
     * (mode_gate, gate.h). A forced PULL reads one-sided. */
    bool can_rma = L->rma_mine && L->t->rma_ready && !L->opts.pull_by_messages;
    bool mapped = can_rma && L->t->rma_mapped && L->table.placement != US_PLACE_COLUMN;
    if (L->mode == US_LOOKUP_AUTO && L->t->rma_manual_progress && !mapped)
        can_rma = false;
    us_route_cost(r, &L->table, L->n_groups, can_rma, &L->opts.cost, &push, &pull);
    L->stats.est_push_bytes += push.bytes;
    L->stats.est_pull_bytes += pull.bytes;
    us_lookup_mode m = L->mode;
    L->mode_gated = m == US_LOOKUP_AUTO && mapped;
    if (L->mode_gated)
        m = us_gate_next(&L->mode_gate) ? US_LOOKUP_PULL : US_LOOKUP_PUSH;
    else if (m == US_LOOKUP_AUTO)
        m = pull.est_us < push.est_us ? US_LOOKUP_PULL : US_LOOKUP_PUSH;
    L->last_mode = m;
    if (!L->cache_on && m == US_LOOKUP_PULL) {
        memset(L->row_ptr, 0, r->n_unique * sizeof *L->row_ptr);
        memset(L->scale_ptr, 0, r->n_unique * sizeof *L->scale_ptr);
        memset(L->local, 0, r->n_unique * sizeof *L->local);
    }
    L->rma_pull = m == US_LOOKUP_PULL && can_rma;
    L->wire_mode = m == US_LOOKUP_PUSH ? US_WIRE_PUSH
                 : L->rma_pull ? US_WIRE_NOP : US_WIRE_ROWS;
    L->batch = *b;
    L->batch_id++;
    L->stats.batches++;
    L->stats.tokens += b->n_tokens;
    L->stats.pairs += (uint64_t)b->n_tokens * b->k;
    L->stats.unique_rows += r->n_unique;
    L->stats.local_rows += r->n_local;
    if (m == US_LOOKUP_PUSH)
        L->stats.push_batches++;
    else
        L->stats.pull_batches++;
    us_route_request q = { .mode = L->wire_mode, .batch_id = L->batch_id,
                           .weights = b->weights,
                           .groups = L->n_groups > 1 ? b->groups : NULL,
                           .n_groups = L->n_groups };
    return us_route_encode(r, &L->table, &q, &L->send, L->shard_off, L->shard_len, err);
}

/* Coordinator without a batch: one NOP (maybe STOP) per shard. */
static int plan_idle(us_lookup *L, uint8_t flags, us_err *err)
{
    for (int s = 0; s < L->w->n_shards; s++) {
        uint64_t bytes = us_wire_req_bytes(0, 0, 0);
        int rc = us_wire_buf_append(&L->send, bytes, &L->shard_off[s], err);
        if (rc != US_OK)
            return rc;
        L->shard_len[s] = bytes;
        us_wire_req req;
        us_wire_req_desc d = { .mode = US_WIRE_NOP, .flags = flags,
                               .table_id = L->table.table_id, .batch_id = L->batch_id,
                               .n_groups = 1 };
        rc = us_wire_req_init(L->send.data + L->shard_off[s], bytes, &d, &req, err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

static int round_start(us_lookup *L, us_err *err)
{
    L->in_round = true;
    L->phase = 0;
    return us_transport_xchg_start(L->t, US_XCHG_TO_SHARDS, L->send.data, L->send_off,
                                   L->send_len, err);
}

static void map_shards_to_ranks(us_lookup *L)
{
    for (int s = 0; s < L->w->n_shards; s++) {
        int rank = us_world_shard_rank(L->w, s);
        L->send_off[rank] = L->shard_off[s];
        L->send_len[rank] = L->shard_len[s];
    }
}

static int begin_common(us_lookup *L, const us_lookup_batch *b, uint8_t idle_flags,
                        us_err *err)
{
    if (L->in_round)
        return us_err_set(err, US_EINVAL, "lookup: rank %d: begin inside a round", L->w->rank);
    if (b != NULL && !L->w->is_coordinator)
        return us_err_set(err, US_EINVAL, "lookup: rank %d is not a coordinator", L->w->rank);
    L->send.len = 0;
    memset(L->send_len, 0, (size_t)L->w->size * sizeof(uint64_t));
    L->have_batch = b != NULL;
    L->rma_pull = false;
    L->pull_sliced = false;
    L->raw = false;
    L->pending_rc = US_OK;
    if (L->w->is_coordinator) {
        int rc = b ? plan_batch(L, b, &L->pending_err) : plan_idle(L, idle_flags, err);
        if (rc != US_OK && b == NULL)
            return rc;
        if (rc != US_OK) {
            /* keep the round collective: NOPs go out, end() reports the error */
            L->pending_rc = rc;
            L->send.len = 0;
            L->have_batch = false;
            if ((rc = plan_idle(L, idle_flags, err)) != US_OK)
                return rc;
        }
        map_shards_to_ranks(L);
    }
    return round_start(L, err);
}

int us_lookup_begin(us_lookup *L, const us_lookup_batch *batch, us_err *err)
{
    return begin_common(L, batch, L->stop_sent ? US_WIRE_F_STOP : 0, err);
}

/* Shard: answer every coordinator's message of this round. */
static int serve_round(us_lookup *L, us_err *err)
{
    const us_world *w = L->w;
    L->resp.len = 0;
    memset(L->resp_len, 0, (size_t)w->size * sizeof(uint64_t));
    bool all = true;
    for (int c = 0; c < w->n_coordinators; c++) {
        uint64_t len;
        const us_wire_req_hdr *h = us_transport_recv(L->t, w->coordinator_ranks[c], &len);
        if (len >= sizeof *h && h->magic == US_WIRE_REQ_MAGIC && (h->flags & US_WIRE_F_STOP))
            L->coord_stopped[c] = true;
        all = all && L->coord_stopped[c];
    }
    uint8_t flags = all ? US_WIRE_F_ALL_STOPPED : 0;
    for (int c = 0; c < w->n_coordinators; c++) {
        int rank = w->coordinator_ranks[c];
        uint64_t len, at = L->resp.len;
        const void *msg = us_transport_recv(L->t, rank, &len);
        int rc = us_serve_request(&L->server, msg, len, flags, &L->resp, NULL, NULL, err);
        if (rc != US_OK)
            return us_err_prefix(err, "shard %d answering rank %d", w->shard_index, rank);
        at = us_wire_pad8(at);
        L->resp_off[rank] = at;
        L->resp_len[rank] = L->resp.len - at;
    }
    L->shard_done = all;
    return US_OK;
}

static us_pull_ctx pull_ctx(us_lookup *L)
{
    return (us_pull_ctx){
        .world = L->w, .t = L->t, .table = &L->table, .route = &L->route, .local = L->local,
        .row_bytes = L->row_bytes, .int8 = L->int8, .cost = &L->opts.cost,
        .row_ptr = L->row_ptr, .scale_ptr = L->scale_ptr, .plan = &L->plan,
        .staging = &L->staging, .staging_cap = &L->staging_cap,
        .slice_ptr = &L->slice_ptr, .slice_cap = &L->slice_cap, .sliced = &L->pull_sliced,
    };
}

static int grow_partial(us_lookup *L, uint64_t floats, us_err *err)
{
    if (floats <= L->partial_cap)
        return US_OK;
    float *q = realloc(L->partial, floats * sizeof *q);
    if (q == NULL)
        return us_err_set(err, US_ENOMEM, "lookup: partial of %" PRIu64 " floats", floats);
    L->partial = q;
    L->partial_cap = floats;
    return US_OK;
}

/* Pull merge: every unique row is local now (cache, landing buffer or a
 * response); sum in the batch's pair order over a one-row-per-block view. */
static int merge_pull(us_lookup *L, float *out, us_err *err)
{
    const us_route *r = &L->route;
    const us_lookup_batch *b = &L->batch;
    us_rows_view v = {
        .dtype = L->table.dtype, .dim = L->table.dim, .block_bits = 0,
        .row_stride_bytes = L->row_bytes, .rows = r->n_unique, .n_blocks = r->n_unique,
        .blocks = L->row_ptr, .block_scales = L->int8 ? L->scale_ptr : NULL,
    };
    uint64_t n_pairs = (uint64_t)b->n_tokens * b->k;
    for (uint64_t p = 0; p < n_pairs; p++)
        L->pair_rows[p] = r->pair_uidx[p];
    if (L->pull_sliced) {
        int rc = grow_partial(L, (uint64_t)b->n_tokens * L->n_groups * L->table.dim, err);
        if (rc != US_OK)
            return rc;
        us_pull_ctx pc = pull_ctx(L);
        return us_pull_sum_slices(&pc, out, L->partial, L->pair_rows, b->weights, b->groups,
                                  b->n_tokens, b->k, L->n_groups, L->opts.n_threads, err);
    }
    if (L->n_groups == 1)
        return us_gather_sum(out, &v, L->pair_rows, b->weights, b->n_tokens, b->k,
                             L->opts.n_threads, err);
    return us_gather_sum_grouped(out, &v, L->pair_rows, b->weights, b->groups,
                                 b->n_tokens, b->k, (int)L->n_groups, L->opts.n_threads, err);
}

/* Push merge, shards' part. Column placement: zero out, then place each
 * shard's slice. Row placement: a token's first partial is written with
 * us_add_to_zero (bit-identical to zeroing and adding, without either
 * pass over out), later ones added; tokens no shard answered for (all
 * rows cached, or k = 0) are zeroed at the end. */
static int merge_shard_sums(us_lookup *L, const us_wire_resp *resp, float *out, us_err *err)
{
    const us_route *r = &L->route;
    const us_table_info *t = &L->table;
    uint32_t G = L->n_groups, D = t->dim, T = L->batch.n_tokens;
    int S = L->w->n_shards;
    bool by_row = t->placement != US_PLACE_COLUMN;
    if (!by_row) {
        memset(out, 0, (uint64_t)T * G * D * sizeof *out);
    } else {
        if (T > L->tok_seen_cap) {
            uint8_t *q = realloc(L->tok_seen, T);
            if (q == NULL)
                return us_err_set(err, US_ENOMEM, "lookup: merge flags for %u tokens", T);
            L->tok_seen = q;
            L->tok_seen_cap = T;
        }
        if (T > 0)
            memset(L->tok_seen, 0, T);
    }
    for (int s = 0; s < S; s++) {
        uint32_t begin = 0, cols = D;
        if (!by_row)
            us_column_slice(D, S, s, &begin, &cols);
        const float *sums = resp[s].sums;
        for (uint32_t j = 0; sums && j < r->shard_tokens[s]; j++) {
            uint32_t tok = r->tok_map[r->tok_off[s] + j];
            bool first = by_row && !L->tok_seen[tok];
            if (by_row)
                L->tok_seen[tok] = 1;
            for (uint32_t g = 0; g < G; g++) {
                const float *src = sums + ((uint64_t)j * G + g) * cols;
                float *dst = out + ((uint64_t)tok * G + g) * D + begin;
                (first ? us_add_to_zero : us_add_inplace)(dst, src, cols);
            }
        }
    }
    for (uint32_t tok = 0; by_row && tok < T; tok++)
        if (!L->tok_seen[tok])
            memset(out + (uint64_t)tok * G * D, 0, (uint64_t)G * D * sizeof *out);
    return US_OK;
}

/* Push merge: add (row placement) or place (column placement) the shards'
 * per-token sums, then add the sum over rows held in the cache. */
static int merge_push(us_lookup *L, const us_wire_resp *resp, float *out, us_err *err)
{
    const us_route *r = &L->route;
    const us_table_info *t = &L->table;
    const us_lookup_batch *b = &L->batch;
    uint32_t G = L->n_groups, D = t->dim;
    uint64_t out_floats = (uint64_t)b->n_tokens * G * D;
    int rc = merge_shard_sums(L, resp, out, err);
    if (rc != US_OK)
        return rc;
    if (r->n_local == 0)
        return US_OK;
    /* cached rows: weights of the other pairs set to 0 (the kernel skips
     * them; their row slot points at any cached row so it validates) */
    uint32_t any_local = 0;
    while (!L->local[any_local])
        any_local++;
    uint64_t n_pairs = (uint64_t)b->n_tokens * b->k;
    for (uint64_t p = 0; p < n_pairs; p++) {
        uint32_t u = r->pair_uidx[p];
        L->pair_rows[p] = L->local[u] ? u : any_local;
        L->pair_w[p] = L->local[u] ? b->weights[p] : 0.0f;
    }
    if ((rc = grow_partial(L, out_floats, err)) != US_OK)
        return rc;
    us_rows_view v = {
        .dtype = t->dtype, .dim = D, .block_bits = 0, .row_stride_bytes = L->row_bytes,
        .rows = r->n_unique, .n_blocks = r->n_unique, .blocks = L->row_ptr,
        .block_scales = L->int8 ? L->scale_ptr : NULL,
    };
    rc = G == 1
        ? us_gather_sum(L->partial, &v, L->pair_rows, L->pair_w, b->n_tokens, b->k,
                        L->opts.n_threads, err)
        : us_gather_sum_grouped(L->partial, &v, L->pair_rows, L->pair_w, b->groups,
                                b->n_tokens, b->k, (int)G, L->opts.n_threads, err);
    if (rc != US_OK)
        return rc;
    us_add_inplace(out, L->partial, out_floats);
    return US_OK;
}

/* Coordinator: check every shard's answer; merge when all are good. */
static int collect(us_lookup *L, float *out, us_err *err)
{
    const us_world *w = L->w;
    int S = w->n_shards, first_rc = US_OK;
    us_wire_resp *resp = L->answers;
    bool all_stopped = true;
    const us_table_info *t = &L->table;
    for (int s = 0; s < S; s++) {
        int rank = us_world_shard_rank(w, s);
        uint64_t len;
        const void *msg = us_transport_recv(L->t, rank, &len);
        const us_wire_req_hdr *asked =
            (const us_wire_req_hdr *)(L->send.data + L->send_off[rank]);
        uint32_t begin = 0, cols = t->dim;
        if (t->placement == US_PLACE_COLUMN)
            us_column_slice(t->dim, S, s, &begin, &cols);
        us_err e = {0};
        int rc = L->raw ? US_OK
               : us_wire_resp_parse(msg, len, &(us_wire_resp_expect){
                                        .asked = asked, .dim = cols,
                                        .elem_bytes = us_dtype_size(t->dtype),
                                        .with_scales = L->int8 }, &resp[s], &e);
        if (rc == US_OK && !L->raw && resp[s].hdr->status < 0) {
            L->stats.shard_errors++;
            rc = us_err_set(&e, resp[s].hdr->status, "shard %d (rank %d) rejected batch "
                            "%" PRIu64 ": %.*s", s, rank, L->batch_id,
                            (int)(resp[s].message_len < 400 ? resp[s].message_len : 400),
                            resp[s].message);
        } else if (rc != US_OK) {
            us_err_prefix(&e, "answer of shard %d (rank %d)", s, rank);
        }
        if (len >= sizeof(us_wire_resp_hdr) && ((uintptr_t)msg & 7u) == 0) {
            const us_wire_resp_hdr *h = msg;
            if (h->magic != US_WIRE_RESP_MAGIC || !(h->flags & US_WIRE_F_ALL_STOPPED))
                all_stopped = false;
        } else {
            all_stopped = false;
        }
        if (rc != US_OK && first_rc == US_OK) {
            first_rc = rc;
            if (err)
                *err = e;
        }
    }
    L->coord_done = all_stopped;
    int rc = first_rc;
    if (rc == US_OK && L->have_batch) {
        if (L->wire_mode == US_WIRE_PUSH) {
            rc = merge_push(L, resp, out, err);
        } else {
            us_pull_ctx pc = pull_ctx(L);
            if (!L->rma_pull)
                rc = us_pull_place_rows(&pc, resp, err);
            if (rc == US_OK)
                rc = merge_pull(L, out, err);
            /* offer what was fetched (pointers are still valid here); the
             * cache admits only rows seen in earlier batches */
            for (uint32_t u = 0; rc == US_OK && L->cache_on && !L->pull_sliced &&
                                 u < L->route.n_unique; u++)
                if (!L->local[u])
                    us_rowcache_offer(&L->cache, L->route.uniq_rows[u], L->row_ptr[u],
                                      L->int8 ? *L->scale_ptr[u] : 0.0f);
        }
    }
    return rc;
}

/* Request exchange done: answer as a shard, read one-sided as a coordinator,
 * start the response exchange. */
static int round_middle(us_lookup *L, us_err *err)
{
    int rc;
    if (L->has_server && (rc = serve_round(L, err)) != US_OK)
        return rc;
    L->fetch_rc = US_OK;
    us_err_clear(&L->fetch_err);
    if (L->w->is_coordinator && L->have_batch && L->rma_pull) {
        us_pull_ctx pc = pull_ctx(L);
        L->fetch_rc = us_pull_rma(&pc, &L->fetch_err);
    }
    return us_transport_xchg_start(L->t, US_XCHG_TO_COORDS, L->resp.data, L->resp_off,
                                   L->resp_len, err);
}

/* Hands the finished batch's time to the gates that chose its way. */
static void record_gates(us_lookup *L)
{
    double dt = us_now_s() - L->t_begin;
    uint64_t pairs = (uint64_t)L->batch.n_tokens * L->batch.k;
    if (L->has_cache && !L->opts.cache_always)
        us_gate_record(&L->cache_gate, L->cache_on, dt, pairs);
    if (L->mode_gated)
        us_gate_record(&L->mode_gate, L->rma_pull, dt, pairs);
}

/* Response exchange done: check and merge the answers. */
static int round_finish(us_lookup *L, float *out, us_err *err)
{
    int rc = US_OK;
    if (L->w->is_coordinator) {
        if (L->fetch_rc != US_OK) {
            if (err)
                *err = L->fetch_err;
            rc = L->fetch_rc;
        } else if (L->have_batch && out == NULL) {
            rc = us_err_set(err, US_EINVAL, "lookup: no output buffer for batch %" PRIu64,
                            L->batch_id);
        } else {
            rc = collect(L, out, err);
            if (rc == US_OK && L->have_batch)
                record_gates(L);
        }
        if (L->pending_rc != US_OK) {
            rc = L->pending_rc;
            if (err)
                *err = L->pending_err;
        }
    }
    L->all_stopped = (!L->has_server || L->shard_done) &&
                     (!L->w->is_coordinator || (L->stop_sent && L->coord_done));
    return rc;
}

int us_lookup_progress(us_lookup *L, float *out, bool *done, us_err *err)
{
    *done = false;
    if (!L->in_round)
        return us_err_set(err, US_EINVAL, "lookup: rank %d: progress without begin",
                          L->w->rank);
    bool xdone = false;
    int rc = us_transport_xchg_test(L->t, &xdone, err);
    if (rc == US_OK && xdone && L->phase == 0) {
        L->phase = 1;
        rc = round_middle(L, err);
        if (rc == US_OK)    /* the response exchange may already be complete */
            rc = us_transport_xchg_test(L->t, &xdone, err);
    }
    if (rc != US_OK) {
        L->in_round = false;
        L->phase = 0;
        return rc;
    }
    if (!xdone || L->phase == 0)
        return US_OK;
    L->in_round = false;
    L->phase = 0;
    L->stats.rounds++;
    *done = true;
    return round_finish(L, out, err);
}

int us_lookup_end(us_lookup *L, float *out, us_err *err)
{
    for (;;) {
        bool done = false;
        int rc = us_lookup_progress(L, out, &done, err);
        if (rc != US_OK || done)
            return rc;
        us_transport_idle(L->t);   /* 2 cores shared by several ranks (LAB.md) */
    }
}

int us_lookup_run(us_lookup *L, const us_lookup_batch *batch, float *out, us_err *err)
{
    int rc = us_lookup_begin(L, batch, err);
    if (rc != US_OK)
        return rc;
    return us_lookup_end(L, out, err);
}

bool us_lookup_stopped(const us_lookup *L)
{
    return L->all_stopped;
}

int us_lookup_serve(us_lookup *L, us_err *err)
{
    if (L->w->is_coordinator)
        return us_err_set(err, US_EINVAL, "lookup: rank %d is a coordinator: use "
                          "us_lookup_finish", L->w->rank);
    while (!L->all_stopped) {
        int rc = us_lookup_run(L, NULL, NULL, err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

int us_lookup_finish(us_lookup *L, us_err *err)
{
    if (!L->w->is_coordinator)
        return us_lookup_serve(L, err);
    while (!L->all_stopped) {
        int rc = us_lookup_stop_round(L, err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

int us_lookup_stop_round(us_lookup *L, us_err *err)
{
    if (!L->w->is_coordinator)
        return us_err_set(err, US_EINVAL, "lookup: rank %d: STOP round on a shard-only "
                          "rank", L->w->rank);
    L->stop_sent = true;
    return us_lookup_run(L, NULL, NULL, err);
}

int us_lookup_raw_round(us_lookup *L, const void *msgs, const uint64_t *off,
                        const uint64_t *len, us_err *err)
{
    if (!L->w->is_coordinator || L->in_round)
        return us_err_set(err, US_EINVAL, "lookup: raw round on rank %d (coordinators "
                          "only, outside a round)", L->w->rank);
    L->send.len = 0;
    memset(L->send_len, 0, (size_t)L->w->size * sizeof(uint64_t));
    for (int s = 0; s < L->w->n_shards; s++) {
        int rc = us_wire_buf_append(&L->send, len[s], &L->shard_off[s], err);
        if (rc != US_OK)
            return rc;
        memcpy(L->send.data + L->shard_off[s], (const uint8_t *)msgs + off[s], len[s]);
        L->shard_len[s] = len[s];
    }
    map_shards_to_ranks(L);
    L->have_batch = false;
    L->rma_pull = false;
    int rc = round_start(L, err);
    if (rc != US_OK)
        return rc;
    L->raw = true;
    rc = us_lookup_end(L, NULL, err);
    L->raw = false;
    return rc;
}

const void *us_lookup_raw_answer(const us_lookup *L, int shard, uint64_t *len)
{
    return us_transport_recv(L->t, us_world_shard_rank(L->w, shard), len);
}

void us_lookup_set_mode(us_lookup *L, us_lookup_mode mode) { L->mode = mode; }
us_lookup_mode us_lookup_last_mode(const us_lookup *L) { return L->last_mode; }
const us_lookup_stats *us_lookup_get_stats(const us_lookup *L) { return &L->stats; }
const us_rowcache *us_lookup_cache(const us_lookup *L) { return L->has_cache ? &L->cache : NULL; }
uint32_t us_lookup_out_dim(const us_lookup *L) { return L->col_count; }

void us_lookup_close(us_lookup *L)
{
    if (L == NULL)
        return;
    if (L->rma_mine && L->t->rma_owner == L)
        L->t->rma_owner = NULL;   /* registrations stay until the next expose */
    if (L->has_server)
        us_server_free(&L->server);
    if (L->has_cache)
        us_rowcache_free(&L->cache);
    us_route_free(&L->route);
    us_read_plan_free(&L->plan);
    us_wire_buf_free(&L->send);
    us_wire_buf_free(&L->resp);
    free(L->send_off);
    free(L->shard_off);
    free(L->coord_stopped);
    free(L->answers);
    free(L->local);
    free(L->row_ptr);
    free(L->scale_ptr);
    free(L->pair_rows);
    free(L->pair_w);
    free(L->partial);
    free(L->tok_seen);
    free(L->staging);
    free(L->slice_ptr);
    free(L);
}
