/* memory_dist.c — memory tables served by shard ranks (see memory_dist.h). */
#include "coordinator/model/memory_dist.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/model/model_store.h"
#include "proto/control.h"
#include "shard/manifest.h"

/* The control messages (CYCLE, SESSION_SAVE/LOAD, STOP and the owner's
 * reply) are declared in proto/ultrashard.proto and framed by proto/control.h;
 * session states follow as their own message on TAG_SESSION_DATA. */
_Static_assert(US_CONTROL_ID_MAX == US_SESSION_ID_MAX,
               "a control message carries any session id");

#define TAG_SESSION_DATA  101
#define TAG_SESSION_REPLY 102

/* Idle shard time between cycles re-checks blocks (shard/store.h scrub): as
 * many bytes as the budget since the open allows, at most 4 MiB a step so a
 * control message is never kept waiting long. A bad block was reported by
 * the store and is refused from now on; serving goes on. */
static void scrub_idle(us_memory_dist *d)
{
    double budget = (MPI_Wtime() - d->scrub_start_s) * d->scrub_bytes_per_s -
                    (double)d->scrub.bytes_checked;
    if (budget < 65536.0)
        return;
    uint64_t max_bytes = budget > 4194304.0 ? 4194304u : (uint64_t)budget;
    us_scrub_report r = {0};
    us_err err = {0};
    (void)us_store_scrub_step(d->store, max_bytes, &r, &err);
    d->scrub.blocks_checked += r.blocks_checked;
    d->scrub.blocks_bad += r.blocks_bad;
    d->scrub.bytes_checked += r.bytes_checked > 0 ? r.bytes_checked : max_bytes;
    if (r.wrapped && r.blocks_checked > 0)
        d->scrub_passes++;
}

/* Waiting for the next cycle: yield while cycles follow each other (a batch
 * job), then sleep, longer the longer nothing comes (a service between
 * requests), so idle ranks leave the cores to others instead of spinning
 * (LAB.md's 2-core pitfall). A cycle that starts after a long idle spell
 * pays at most 1 ms. */
static void idle_wait(double waited_s)
{
    if (waited_s < 0.001) {
        sched_yield();
        return;
    }
    long ns = waited_s < 0.02 ? 100000L : 1000000L;
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

/* The control exchange that opens every cycle: each coordinator's message
 * (mine; NULL on shard-only ranks) reaches every rank, into d->ctl_msgs.
 * Non-blocking on every rank: blocking and non-blocking collectives do not
 * match in MPI. While it has not completed, a coordinator may still be
 * reading rows one-sided from a shard (fabric pull), which on
 * manual-progress providers completes only if the shard polls: so shards
 * wait by polling the transports, yielding the CPU in between (2-core boxes). */
static int ctl_exchange(us_memory_dist *d, const us_control_msg *mine, us_err *err)
{
    const us_world *w = d->world;
    uint8_t frame[US_CONTROL_FRAME_BYTES];
    int rc;
    if (mine != NULL && (rc = us_control_encode(mine, frame, err)) != US_OK)
        return rc;
    MPI_Request req;
    if (MPI_Iallgatherv(frame, mine != NULL ? (int)sizeof frame : 0, MPI_BYTE, d->ctl_frames,
                        d->ctl_counts, d->ctl_displs, MPI_BYTE, d->ctl_comm, &req)
            != MPI_SUCCESS)
        return us_err_set(err, US_EMPI, "rank %d: control exchange failed", w->rank);
    double wait_start = MPI_Wtime();
    for (int done = 0; !done;) {
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return us_err_set(err, US_EMPI, "rank %d: control exchange failed", w->rank);
        for (uint32_t t = 0; !done && w->is_shard && t < d->n_tables; t++)
            if ((rc = us_transport_poll(d->transports[t], err)) != US_OK)
                return rc;
        if (!done && w->is_shard && d->store != NULL && d->scrub_bytes_per_s > 0)
            scrub_idle(d);
        if (!done)
            idle_wait(MPI_Wtime() - wait_start);
    }
    for (int c = 0; c < w->n_coordinators; c++)
        if (us_control_decode(d->ctl_frames + (size_t)c * US_CONTROL_FRAME_BYTES,
                              US_CONTROL_FRAME_BYTES, &d->ctl_msgs[c], err) != US_OK)
            return us_err_prefix(err, "rank %d: from coordinator %d (rank %d)", w->rank, c,
                                 w->coordinator_ranks[c]);
    return US_OK;
}

/* Returns: how many coordinators sent `kind` in the last exchange. */
static int count_kind(const us_memory_dist *d, us_control_kind kind)
{
    int n = 0;
    for (int c = 0; c < d->world->n_coordinators; c++)
        n += d->ctl_msgs[c].kind == kind;
    return n;
}

/* This rank's empty rounds of a cycle that some coordinator's forward pass
 * runs (shard-only ranks serve in them). */
static int empty_cycle(us_memory_dist *d, us_err *err)
{
    for (uint32_t t = 0; t < d->n_tables; t++) {
        int rc = us_lookup_run(d->tables[t], NULL, NULL, err);
        if (rc != US_OK)
            return us_err_prefix(err, "rank %d in an empty round of table %u", d->world->rank,
                                 t);
    }
    return US_OK;
}

/* Owner shard: one session operation asked by coordinator rank `peer`. */
static int serve_session(us_memory_dist *d, const us_control_msg *c, int peer, us_err *err);

/* The session operations of coordinators [from, to) of the last exchange
 * that this rank owns. Every rank walks them in coordinator order, so each
 * transfer's two ends meet without waiting on a third rank. */
static int serve_ops(us_memory_dist *d, int from, int to, us_err *err)
{
    const us_world *w = d->world;
    for (int c = from; c < to; c++) {
        const us_control_msg *m = &d->ctl_msgs[c];
        bool op = m->kind == US_CONTROL_SESSION_SAVE || m->kind == US_CONTROL_SESSION_LOAD;
        int peer = w->coordinator_ranks[c];
        if (!op || peer == w->rank || m->owner != w->shard_index)
            continue;
        int rc = serve_session(d, m, peer, err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

/* The rest of a cycle from coordinator `from` on: the session operations
 * this rank owns, then empty rounds if some coordinator runs a forward pass. */
static int cycle_rest(us_memory_dist *d, int from, us_err *err)
{
    int rc = serve_ops(d, from, d->world->n_coordinators, err);
    if (rc == US_OK && count_kind(d, US_CONTROL_CYCLE) > 0)
        rc = empty_cycle(d, err);
    return rc;
}

/* Coordinator: the owner's reply to a session operation. */
static int recv_reply(us_memory_dist *d, int owner_rank, us_control_reply *r, us_err *err)
{
    uint8_t buf[US_CONTROL_REPLY_MAX_BYTES];
    MPI_Status st;
    int n = 0;
    if (MPI_Recv(buf, (int)sizeof buf, MPI_BYTE, owner_rank, TAG_SESSION_REPLY, d->ctl_comm,
                 &st) != MPI_SUCCESS ||
        MPI_Get_count(&st, MPI_BYTE, &n) != MPI_SUCCESS || n < 0)
        return us_err_set(err, US_EMPI, "rank %d: receiving a session reply from rank %d",
                          d->world->rank, owner_rank);
    if (us_control_reply_decode(buf, (size_t)n, r, err) != US_OK)
        return us_err_prefix(err, "from rank %d", owner_rank);
    return US_OK;
}

/* Index in the manifest of memory table t: by name "table_<t>", else by id. */
static int find_table(const us_manifest *m, const char *store_dir, uint32_t t, us_err *err)
{
    char name[32];
    snprintf(name, sizeof name, "table_%u", t);
    int i = us_manifest_find(m, name);
    if (i < 0) {
        snprintf(name, sizeof name, "%u", t);
        i = us_manifest_find(m, name);
    }
    if (i < 0)
        return us_err_set(err, US_ENOTFOUND, "store %s has no table \"table_%u\" (id %u)",
                          store_dir, t, t);
    if (m->tables[i].synthetic)
        return us_err_set(err, US_EUNSUPP, "store %s: table \"table_%u\" is synthetic; a "
                          "model needs stored values", store_dir, t);
    return i;
}

static us_lookup_opts lookup_opts(const us_memory_dist_opts *opts)
{
    return (us_lookup_opts){ .mode = opts->mode, .max_tokens = opts->max_tokens,
                             .max_k = opts->k, .n_groups = opts->n_groups,
                             .cache_bytes = opts->cache_bytes, .n_threads = opts->n_threads };
}

/* This rank's part of open: manifest, shape checks, own shard files. */
static int open_local(us_memory_dist *d, const us_world *w, const char *store_dir,
                      uint32_t n_tables, const us_memory_dist_opts *opts, us_manifest *m,
                      uint64_t *max_msg, us_err *err)
{
    int rc = us_manifest_read(store_dir, m, err);
    if (rc != US_OK)
        return rc;
    if (m->shard_count != (uint32_t)w->n_shards)
        return us_err_set(err, US_EINVAL, "store %s has %u shards but this job has %d shard "
                          "ranks: run %u shard ranks (mpirun -n %u) or reshard the store",
                          store_dir, m->shard_count, w->n_shards, m->shard_count,
                          m->shard_count + (uint32_t)(w->size - w->n_shards));
    d->n_tables = n_tables;
    size_t n = n_tables ? n_tables : 1;
    d->tables = calloc(n, sizeof *d->tables);
    d->info = calloc(n, sizeof *d->info);
    d->views = calloc(n, sizeof *d->views);
    d->transports = calloc(n, sizeof *d->transports);
    if (d->tables == NULL || d->info == NULL || d->views == NULL || d->transports == NULL)
        return us_err_set(err, US_ENOMEM, "memory tables of %s", store_dir);
    us_lookup_opts lo = lookup_opts(opts);
    for (uint32_t t = 0; t < n_tables; t++) {
        int i = find_table(m, store_dir, t, err);
        if (i < 0)
            return i;
        const us_table_layout *tl = &m->tables[i];
        d->info[t] = (us_table_info){ .table_id = tl->table_id, .rows = tl->rows,
                                      .dim = tl->dim, .dtype = tl->dtype,
                                      .block_bits = tl->block_bits,
                                      .placement_seed = tl->placement_seed,
                                      .placement = US_PLACE_ROW };
        uint64_t b = us_lookup_max_msg_bytes(&d->info[t], &lo, w->n_shards);
        *max_msg = b > *max_msg ? b : *max_msg;
    }
    if (!w->is_shard)
        return US_OK;
    us_store_opts so = { .backend = US_BACKEND_MMAP, .shard_index = w->shard_index,
                         .expect_shards = w->n_shards };
    if ((rc = us_store_open(store_dir, &so, &d->store, err)) != US_OK)
        return us_err_prefix(err, "shard %d (rank %d)", w->shard_index, w->rank);
    return US_OK;
}

/* The control exchange's buffers: a frame from each coordinator rank,
 * nothing from shard-only ranks. */
static int ctl_alloc(us_memory_dist *d, us_err *err)
{
    const us_world *w = d->world;
    size_t nc = (size_t)w->n_coordinators;
    d->ctl_frames = malloc(nc * US_CONTROL_FRAME_BYTES);
    d->ctl_msgs = calloc(nc, sizeof *d->ctl_msgs);
    d->ctl_counts = calloc((size_t)w->size, sizeof *d->ctl_counts);
    d->ctl_displs = calloc((size_t)w->size, sizeof *d->ctl_displs);
    if (!d->ctl_frames || !d->ctl_msgs || !d->ctl_counts || !d->ctl_displs)
        return us_err_set(err, US_ENOMEM, "rank %d: control buffers", w->rank);
    for (int c = 0; c < w->n_coordinators; c++) {
        d->ctl_counts[w->coordinator_ranks[c]] = US_CONTROL_FRAME_BYTES;
        d->ctl_displs[w->coordinator_ranks[c]] = c * US_CONTROL_FRAME_BYTES;
    }
    return US_OK;
}

int us_memory_dist_open(us_memory_dist *d, const us_world *w, const char *store_dir,
                        uint32_t n_tables, const us_memory_dist_opts *opts, us_err *err)
{
    memset(d, 0, sizeof *d);
    d->world = w;
    d->ctl_comm = MPI_COMM_NULL;
    /* Local checks first; every rank then learns whether all succeeded, so
     * a shard that cannot open its files does not leave the others waiting
     * in the collective transport start, and its message is out first. */
    us_manifest m = {0};
    uint64_t max_msg = 0;
    int rc = open_local(d, w, store_dir, n_tables, opts, &m, &max_msg, err);
    us_manifest_free(&m);
    char what[4200];
    snprintf(what, sizeof what, "opening store %s", store_dir);
    rc = us_world_agree(w, rc, what, err);
    if (rc != US_OK)
        goto fail;
    if (MPI_Comm_dup(w->comm, &d->ctl_comm) != MPI_SUCCESS) {
        d->ctl_comm = MPI_COMM_NULL;
        rc = us_err_set(err, US_EMPI, "rank %d: MPI_Comm_dup for control", w->rank);
        goto fail;
    }
    MPI_Comm_set_errhandler(d->ctl_comm, MPI_ERRORS_RETURN);
    if ((rc = ctl_alloc(d, err)) != US_OK)
        goto fail;
    d->sessions_dir = opts->sessions_dir;
    d->session_seed = n_tables > 0 ? d->info[0].placement_seed : 0;
    d->scrub_bytes_per_s = opts->scrub_mb_per_s > 0 ? opts->scrub_mb_per_s * 1e6 : 0;
    d->scrub_start_s = MPI_Wtime();
    us_lookup_opts lo = lookup_opts(opts);
    us_transport_opts to = { .max_msg_bytes = max_msg };
    for (uint32_t t = 0; t < n_tables; t++) {
        if ((rc = us_transport_open(opts->transport ? opts->transport : "mpi", w, &to,
                                    &d->transports[t], err)) != US_OK)
            goto fail;
        us_rows_view *local = NULL;
        if (w->is_shard) {
            size_t index;
            if ((rc = us_model_store_find(d->store, t, &index, err)) != US_OK)
                goto fail;
            if ((rc = us_store_view(d->store, index, &d->views[t], err)) != US_OK)
                goto fail;
            local = &d->views[t];
            lo.store = d->store;        /* requests are CRC-checked per block */
            lo.store_table = index;
        }
        if ((rc = us_lookup_open(&d->tables[t], w, d->transports[t], &d->info[t], local, &lo,
                                 err)) != US_OK)
            goto fail;
    }
    return US_OK;

fail:
    us_memory_dist_close(d);
    return rc;
}

/* Coordinator: the next round of the cycle (table next_table), with the
 * cycle's control broadcast first when it starts at table 0; batch NULL is
 * an empty round. */
static int cycle_round(us_memory_dist *d, const us_lookup_batch *batch, float *out,
                       us_err *err)
{
    if (d->next_table == 0) {
        us_control_msg c = { .kind = US_CONTROL_CYCLE };
        int rc = ctl_exchange(d, &c, err);
        if (rc == US_OK)   /* others' session operations come before the rounds */
            rc = serve_ops(d, 0, d->world->n_coordinators, err);
        if (rc != US_OK)
            return rc;
    }
    int rc = us_lookup_run(d->tables[d->next_table], batch, out, err);
    d->next_table = (d->next_table + 1) % d->n_tables;
    return rc;
}

static int dist_lookup(void *ctx, int table_id, const uint64_t *rows, const float *weights,
                       const uint8_t *ive_group, size_t n_tokens, size_t k, int n_groups,
                       float *out_grouped, us_err *err)
{
    us_memory_dist *d = ctx;
    if (table_id < 0 || (uint32_t)table_id >= d->n_tables)
        return us_err_set(err, US_ERANGE, "memory table %d: the store serves %u tables",
                          table_id, d->n_tables);
    /* A table out of cycle order would pair this round with another table's
     * round on the shards: bring the cycle to this table first. */
    while (d->next_table != (uint32_t)table_id) {
        int rc = cycle_round(d, NULL, NULL, err);
        if (rc != US_OK)
            return rc;
    }
    (void)n_groups;   /* fixed at open: the lookup's n_groups */
    us_lookup_batch batch = { .n_tokens = (uint32_t)n_tokens, .k = (uint32_t)k,
                              .rows = rows, .weights = weights, .groups = ive_group };
    return cycle_round(d, &batch, out_grouped, err);
}

static int dist_table_info(void *ctx, int table_id, uint64_t *rows, uint32_t *dim, us_err *err)
{
    us_memory_dist *d = ctx;
    if (table_id < 0 || (uint32_t)table_id >= d->n_tables)
        return us_err_set(err, US_ENOTFOUND, "memory table %d: the store serves %u tables",
                          table_id, d->n_tables);
    *rows = d->info[table_id].rows;
    *dim = d->info[table_id].dim;
    return US_OK;
}

void us_memory_dist_backend(us_memory_dist *d, us_memory_backend *backend)
{
    memset(backend, 0, sizeof *backend);
    backend->ctx = d;
    backend->lookup = dist_lookup;
    backend->table_info = dist_table_info;
}

int us_memory_dist_sync(us_memory_dist *d, us_err *err)
{
    while (d->next_table != 0) {   /* mid-cycle: no control message is due */
        int rc = cycle_round(d, NULL, NULL, err);
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

int us_memory_dist_idle(us_memory_dist *d, us_err *err)
{
    int rc = us_memory_dist_sync(d, err);
    us_control_msg c = { .kind = US_CONTROL_IDLE };
    if (rc == US_OK)
        rc = ctl_exchange(d, &c, err);
    if (rc == US_OK)
        rc = cycle_rest(d, 0, err);
    return rc;
}

int us_memory_dist_finish(us_memory_dist *d, us_err *err)
{
    if (d->finished)
        return US_OK;
    int rc = us_memory_dist_sync(d, err);
    us_control_msg c = { .kind = US_CONTROL_STOP };
    /* Other coordinators may still decode: take part in their cycles until
     * every coordinator has said STOP in the same exchange. */
    while (rc == US_OK) {
        if ((rc = ctl_exchange(d, &c, err)) != US_OK)
            break;
        if (count_kind(d, US_CONTROL_STOP) == d->world->n_coordinators)
            break;
        rc = cycle_rest(d, 0, err);
    }
    for (uint32_t t = 0; rc == US_OK && t < d->n_tables; t++)
        rc = us_lookup_finish(d->tables[t], err);
    d->finished = true;
    return rc;
}

int us_memory_dist_serve(us_memory_dist *d, us_err *err)
{
    if (d->world->is_coordinator)
        return us_err_set(err, US_EINVAL, "rank %d is a coordinator: it runs the model",
                          d->world->rank);
    for (;;) {
        int rc = ctl_exchange(d, NULL, err);
        if (rc != US_OK)
            return rc;
        if (count_kind(d, US_CONTROL_STOP) == d->world->n_coordinators) {
            for (uint32_t t = 0; t < d->n_tables; t++)
                if ((rc = us_lookup_serve(d->tables[t], err)) != US_OK)
                    return rc;
            return US_OK;
        }
        if ((rc = cycle_rest(d, 0, err)) != US_OK)
            return us_err_prefix(err, "shard %d", d->world->shard_index);
    }
}

/* --- sessions on their owner shard --------------------------------------- */

static int local_save(const us_memory_dist *d, us_session_state *s, us_err *err)
{
    if (d->sessions_dir == NULL)
        return us_err_set(err, US_EINVAL, "shard %d owns session '%s' but was started without "
                          "--sessions DIR", d->world->shard_index, s->id);
    return us_session_save(d->sessions_dir, s, err);
}

static int local_load(const us_memory_dist *d, const char *id, us_session_state *out,
                      char *note, size_t note_bytes, us_err *err)
{
    if (d->sessions_dir == NULL)
        return us_err_set(err, US_EINVAL, "shard %d owns session '%s' but was started without "
                          "--sessions DIR", d->world->shard_index, id);
    return us_session_load(d->sessions_dir, id, out, note, note_bytes, err);
}

static int send_reply(us_memory_dist *d, int coord, const us_control_reply *r,
                      const uint8_t *data, us_err *err)
{
    uint8_t buf[US_CONTROL_REPLY_MAX_BYTES];
    size_t len = 0;
    int rc = us_control_reply_encode(r, buf, sizeof buf, &len, err);
    if (rc != US_OK)
        return us_err_prefix(err, "shard %d", d->world->shard_index);
    if (MPI_Send(buf, (int)len, MPI_BYTE, coord, TAG_SESSION_REPLY, d->ctl_comm)
            != MPI_SUCCESS ||
        (r->state_bytes > 0 && MPI_Send(data, (int)r->state_bytes, MPI_BYTE, coord,
                                        TAG_SESSION_DATA, d->ctl_comm) != MPI_SUCCESS))
        return us_err_set(err, US_EMPI, "shard %d: sending a session reply",
                          d->world->shard_index);
    return US_OK;
}

static int serve_session(us_memory_dist *d, const us_control_msg *c, int peer, us_err *err)
{
    us_control_reply r = {0};
    us_err op_err = {0};
    uint8_t *data = NULL;
    us_session_state s = {0};
    if (c->kind == US_CONTROL_SESSION_SAVE) {
        if (c->state_bytes > INT32_MAX)
            return us_err_set(err, US_EPROTO, "session '%s': %llu bytes", c->session_id,
                              (unsigned long long)c->state_bytes);
        data = malloc(c->state_bytes ? c->state_bytes : 1);
        if (data == NULL)
            return us_err_set(err, US_ENOMEM, "session '%s': receive buffer", c->session_id);
        if (MPI_Recv(data, (int)c->state_bytes, MPI_BYTE, peer, TAG_SESSION_DATA,
                     d->ctl_comm, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            free(data);
            return us_err_set(err, US_EMPI, "shard %d: receiving session '%s'",
                              d->world->shard_index, c->session_id);
        }
        char what[64];
        snprintf(what, sizeof what, "session from rank %d", peer);
        r.code = us_session_unpack(data, c->state_bytes, c->session_id, what, &s, &op_err);
        free(data);
        data = NULL;
        if (r.code == US_OK)
            r.code = local_save(d, &s, &op_err);
        r.generation = s.generation;
        us_session_free(&s);
    } else {
        r.code = local_load(d, c->session_id, &s, r.note, sizeof r.note, &op_err);
        size_t bytes = 0;
        if (r.code == US_OK)
            r.code = us_session_pack(&s, s.generation, &data, &bytes, &op_err);
        r.state_bytes = r.code == US_OK ? bytes : 0;
        us_session_free(&s);
    }
    if (r.code != US_OK)
        snprintf(r.msg, sizeof r.msg, "shard %d: %.480s", d->world->shard_index, op_err.msg);
    int rc = send_reply(d, peer, &r, data, err);
    free(data);
    return rc;
}

/* The rest of a cycle in which this coordinator made a session operation
 * with result op_rc (*err holds its message): later coordinators' operations
 * this rank owns and the cycle's rounds. A failed rest (the transport) wins. */
static int end_op_cycle(us_memory_dist *d, int op_rc, us_err *err)
{
    if (op_rc == US_EMPI)
        return op_rc;   /* the job is aborted: lockstep no longer matters */
    us_err rest = {0};
    int rc = cycle_rest(d, d->world->coordinator_index + 1, &rest);
    if (rc != US_OK) {
        if (err != NULL)
            *err = rest;
        return rc;
    }
    return op_rc;
}

/* Exchanges this coordinator's session operation c, then serves the
 * earlier coordinators' operations this rank owns: its own transfer is next. */
static int start_op_cycle(us_memory_dist *d, const us_control_msg *c, us_err *err)
{
    int rc = us_memory_dist_sync(d, err);
    if (rc == US_OK)
        rc = ctl_exchange(d, c, err);
    if (rc == US_OK)
        rc = serve_ops(d, 0, d->world->coordinator_index, err);
    return rc;
}

/* This coordinator's part of a SESSION_SAVE: the packed state to the owner. */
static int save_transfer(us_memory_dist *d, us_session_state *s, const uint8_t *buf,
                         size_t bytes, int owner, us_err *err)
{
    if (owner == d->world->shard_index)          /* this coordinator is the owner */
        return local_save(d, s, err);
    int owner_rank = us_world_shard_rank(d->world, owner);
    us_control_reply r;
    if (MPI_Send(buf, (int)bytes, MPI_BYTE, owner_rank, TAG_SESSION_DATA, d->ctl_comm)
            != MPI_SUCCESS)
        return us_err_set(err, US_EMPI, "saving session '%s' on shard %d (rank %d)", s->id,
                          owner, owner_rank);
    int rc = recv_reply(d, owner_rank, &r, err);
    if (rc != US_OK)
        return rc;
    if (r.code != US_OK)
        return us_err_set(err, r.code, "%s", r.msg);
    s->generation = r.generation;
    return US_OK;
}

static int dist_session_save(void *ctx, us_session_state *s, us_err *err)
{
    us_memory_dist *d = ctx;
    int owner = us_session_owner(s->id, d->session_seed, d->world->n_shards);
    uint8_t *buf = NULL;
    size_t bytes = 0;
    /* the owner assigns the generation; pack with the current one */
    int rc = us_session_pack(s, s->generation, &buf, &bytes, err);
    if (rc != US_OK)
        return rc;
    us_control_msg c = { .kind = US_CONTROL_SESSION_SAVE, .owner = owner,
                         .state_bytes = bytes };
    snprintf(c.session_id, sizeof c.session_id, "%s", s->id);
    if ((rc = start_op_cycle(d, &c, err)) == US_OK)
        rc = end_op_cycle(d, save_transfer(d, s, buf, bytes, owner, err), err);
    free(buf);
    return rc;
}

/* This coordinator's part of a SESSION_LOAD: the owner's reply and state. */
static int load_transfer(us_memory_dist *d, const char *id, int owner, us_session_state *out,
                         char *note, size_t note_bytes, us_err *err)
{
    if (owner == d->world->shard_index)
        return local_load(d, id, out, note, note_bytes, err);
    int owner_rank = us_world_shard_rank(d->world, owner);
    us_control_reply r;
    int rc = recv_reply(d, owner_rank, &r, err);
    if (rc != US_OK)
        return us_err_prefix(err, "loading session '%s' from shard %d", id, owner);
    if (r.code != US_OK)
        return us_err_set(err, r.code, "%s", r.msg);
    if (r.state_bytes > INT32_MAX)
        return us_err_set(err, US_EPROTO, "session '%s' from shard %d: %llu bytes", id, owner,
                          (unsigned long long)r.state_bytes);
    uint8_t *data = malloc(r.state_bytes ? r.state_bytes : 1);
    if (data == NULL)
        return us_err_set(err, US_ENOMEM, "session '%s': receive buffer", id);
    if (MPI_Recv(data, (int)r.state_bytes, MPI_BYTE, owner_rank, TAG_SESSION_DATA, d->ctl_comm,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        free(data);
        return us_err_set(err, US_EMPI, "loading session '%s' from shard %d (rank %d)", id,
                          owner, owner_rank);
    }
    char what[64];
    snprintf(what, sizeof what, "session from shard %d", owner);
    rc = us_session_unpack(data, r.state_bytes, id, what, out, err);
    free(data);
    if (rc == US_OK && note != NULL && note_bytes > 0)
        snprintf(note, note_bytes, "%s", r.note);
    return rc;
}

static int dist_session_load(void *ctx, const char *id, us_session_state *out, char *note,
                             size_t note_bytes, us_err *err)
{
    us_memory_dist *d = ctx;
    int rc = us_session_check_id(id, err);
    if (rc != US_OK)
        return rc;
    int owner = us_session_owner(id, d->session_seed, d->world->n_shards);
    us_control_msg c = { .kind = US_CONTROL_SESSION_LOAD, .owner = owner };
    snprintf(c.session_id, sizeof c.session_id, "%s", id);
    if ((rc = start_op_cycle(d, &c, err)) != US_OK)
        return rc;
    return end_op_cycle(d, load_transfer(d, id, owner, out, note, note_bytes, err), err);
}

void us_memory_dist_session_store(us_memory_dist *d, us_session_store *store)
{
    store->ctx = d;
    store->save = dist_session_save;
    store->load = dist_session_load;
}

static int engine_serve(void *self, us_err *err) { return us_memory_dist_serve(self, err); }
static int engine_finish(void *self, us_err *err) { return us_memory_dist_finish(self, err); }
static void engine_close(void *self) { us_memory_dist_close(self); }

static const us_round_engine_ops memory_engine_ops = {
    .name = "memory", .serve = engine_serve, .finish = engine_finish, .close = engine_close,
};

us_round_engine us_memory_dist_engine(us_memory_dist *d)
{
    return (us_round_engine){ .ops = &memory_engine_ops, .self = d };
}

void us_memory_dist_close(us_memory_dist *d)
{
    if (d->scrub_bytes_per_s > 0 && d->store != NULL)
        fprintf(stderr, "ultrashard: shard %d: scrub checked %llu blocks (%.1f MiB, %llu full "
                "passes), %llu bad\n", d->world->shard_index,
                (unsigned long long)d->scrub.blocks_checked,
                (double)d->scrub.bytes_checked / 1048576.0,
                (unsigned long long)d->scrub_passes, (unsigned long long)d->scrub.blocks_bad);
    for (uint32_t t = 0; d->tables && t < d->n_tables; t++)
        if (d->tables[t] != NULL)
            us_lookup_close(d->tables[t]);
    for (uint32_t t = 0; d->transports && t < d->n_tables; t++)
        if (d->transports[t] != NULL)
            us_transport_close(d->transports[t]);
    free(d->tables);
    free(d->info);
    free(d->views);
    free(d->transports);
    if (d->ctl_comm != MPI_COMM_NULL)
        MPI_Comm_free(&d->ctl_comm);
    free(d->ctl_frames);
    free(d->ctl_msgs);
    free(d->ctl_counts);
    free(d->ctl_displs);
    if (d->store != NULL)
        us_store_close(d->store);
    memset(d, 0, sizeof *d);
}
