/*
 * work.c — what a serve cycle does with the queued requests (server.h):
 * Lookup requests of a table are coalesced into one lookup round of the
 * model's memory backend (every request's pairs padded to the table's k
 * with zero weights, which the gather skips), and the Generate requests
 * are decoded by an infer stream, one step per cycle, each token answered
 * as it is produced. Stats and Health are answered at once.
 */
#include "coordinator/serve/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/model/memlayer.h"

void serve_req_free(serve_req *q)
{
    if (q == NULL)
        return;
    ultrashard__request__free_unpacked(q->msg, NULL);
    free(q);
}

static void queue_push(serve_queue *qu, serve_req *q)
{
    q->next = NULL;
    if (qu->tail)
        qu->tail->next = q;
    else
        qu->head = q;
    qu->tail = q;
    qu->n++;
}

/* Unlinks q (whose predecessor is prev, NULL for the head) from qu.
 * Returns: q. */
static serve_req *queue_unlink(serve_queue *qu, serve_req *prev, serve_req *q)
{
    if (prev)
        prev->next = q->next;
    else
        qu->head = q->next;
    if (qu->tail == q)
        qu->tail = prev;
    qu->n--;
    q->next = NULL;
    return q;
}

static serve_req *queue_pop(serve_queue *qu)
{
    return qu->head ? queue_unlink(qu, NULL, qu->head) : NULL;
}

/* Unlinks the first Memory request of the queue; NULL when there is none. */
static serve_req *unlink_memory(serve_queue *qu)
{
    serve_req *prev = NULL;
    for (serve_req *q = qu->head; q != NULL; prev = q, q = q->next) {
        if (q->msg->body_case == ULTRASHARD__REQUEST__BODY_MEMORY)
            return queue_unlink(qu, prev, q);
    }
    return NULL;
}

/* Table index of a name "table_<t>"; -1 when the model has no such table. */
static int table_index(const us_service *s, const char *name)
{
    unsigned t;
    int used = 0;
    if (sscanf(name, "table_%u%n", &t, &used) != 1 || name[used] != '\0' || t >= s->n_tables)
        return -1;
    char canon[32];
    snprintf(canon, sizeof canon, "table_%u", t);
    return strcmp(canon, name) == 0 ? (int)t : -1;
}

/* A Lookup against the table: k, groups, rows. Returns the status. */
static int check_lookup_table(const us_service *s, serve_req *q, char *msg, size_t cap)
{
    const Ultrashard__LookupRequest *l = q->msg->lookup;
    int t = table_index(s, l->table);
    if (t < 0) {
        snprintf(msg, cap, "lookup: no table \"%s\" (tables: table_0 .. table_%u)", l->table,
                 s->n_tables - 1);
        return ULTRASHARD__STATUS__STATUS_NOT_FOUND;
    }
    q->table = (uint32_t)t;
    q->tokens = l->n_tokens;
    if (l->k > s->k || l->n_tokens > s->o->max_batch_tokens) {
        snprintf(msg, cap, "lookup: k %u and n_tokens %u exceed this server's k %u and "
                 "--max-batch-tokens %u", l->k, l->n_tokens, s->k, s->o->max_batch_tokens);
        return ULTRASHARD__STATUS__STATUS_TOO_LARGE;
    }
    if (l->n_groups > (s->n_groups ? s->n_groups : 1)) {
        snprintf(msg, cap, "lookup: n_groups %u exceeds the table's %u IVE groups", l->n_groups,
                 s->n_groups ? s->n_groups : 1);
        return ULTRASHARD__STATUS__STATUS_BAD_REQUEST;
    }
    for (size_t i = 0; i < l->n_rows; i++)
        if (l->rows[i] >= s->table_rows[t]) {
            snprintf(msg, cap, "lookup: row %llu (pair %zu) >= rows %llu of %s",
                     (unsigned long long)l->rows[i], i, (unsigned long long)s->table_rows[t],
                     l->table);
            return ULTRASHARD__STATUS__STATUS_OUT_OF_RANGE;
        }
    return ULTRASHARD__STATUS__STATUS_OK;
}

static int check_memory_table(const us_service *s, serve_req *q, char *msg, size_t cap)
{
    const Ultrashard__MemoryRequest *mr = q->msg->memory;
    int t = table_index(s, mr->table);
    if (t < 0) {
        snprintf(msg, cap, "memory: no table \"%s\"", mr->table);
        return ULTRASHARD__STATUS__STATUS_NOT_FOUND;
    }
    q->table = (uint32_t)t;
    q->tokens = mr->n_tokens;
    uint32_t d = s->m->cfg.d_model;
    if (mr->dim != d || mr->n_tokens > s->o->max_batch_tokens) {
        snprintf(msg, cap, "memory: dim %u must be d_model %u and n_tokens %u at most "
                 "--max-batch-tokens %u", mr->dim, d, mr->n_tokens, s->o->max_batch_tokens);
        return mr->dim != d ? ULTRASHARD__STATUS__STATUS_BAD_REQUEST
                            : ULTRASHARD__STATUS__STATUS_TOO_LARGE;
    }
    return ULTRASHARD__STATUS__STATUS_OK;
}

void serve_enqueue(us_service *s, serve_req *q)
{
    char msg[256] = "";
    int st = ULTRASHARD__STATUS__STATUS_OK;
    switch (q->msg->body_case) {
    case ULTRASHARD__REQUEST__BODY_LOOKUP:
        st = check_lookup_table(s, q, msg, sizeof msg);
        break;
    case ULTRASHARD__REQUEST__BODY_MEMORY:
        st = check_memory_table(s, q, msg, sizeof msg);
        break;
    default: {  /* Generate */
        Ultrashard__GenerateRequest *g = q->msg->generate;
        q->prompt = (us_prompt){ .id = g->id, .bytes = g->prompt.data, .n_bytes = g->prompt.len,
                                 .max_tokens = g->max_tokens ? g->max_tokens
                                                             : s->o->default_max_tokens };
        break;
    }
    }
    if (st != ULTRASHARD__STATUS__STATUS_OK) {
        serve_fail(s, q, st, msg);
        return;
    }
    queue_push(q->msg->body_case == ULTRASHARD__REQUEST__BODY_GENERATE ? &s->gens : &s->lookups,
               q);
    s->metrics.queue_depth = s->lookups.n + s->gens.n;
}

bool serve_has_work(const us_service *s)
{
    return s->lookups.n > 0 || s->gens.n > 0 ||
           (s->stream != NULL && us_infer_stream_active(s->stream) > 0);
}

/* --- lookups -------------------------------------------------------------- */

/* Answers request q from the round's output rows [first, first + n_tokens). */
static void answer_lookup(us_service *s, serve_req *q, size_t first)
{
    const Ultrashard__LookupRequest *l = q->msg->lookup;
    uint32_t G = s->n_groups ? s->n_groups : 1, g_req = l->n_groups ? l->n_groups : 1;
    float *sums = malloc((size_t)l->n_tokens * g_req * s->dim * sizeof(float));
    if (sums == NULL) {
        serve_fail(s, q, ULTRASHARD__STATUS__STATUS_INTERNAL, "lookup: out of memory");
        return;
    }
    for (uint32_t t = 0; t < l->n_tokens; t++)
        memcpy(sums + (size_t)t * g_req * s->dim,
               s->out_buf + ((first + t) * G) * s->dim, (size_t)g_req * s->dim * sizeof(float));
    Ultrashard__LookupResponse lr = ULTRASHARD__LOOKUP_RESPONSE__INIT;
    lr.n_tokens = l->n_tokens;
    lr.n_groups = g_req;
    lr.dim = s->dim;
    lr.n_sums = (size_t)l->n_tokens * g_req * s->dim;
    lr.sums = sums;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_LOOKUP;
    r.lookup = &lr;
    serve_answer(s, q, &r, true);
    free(sums);
}

/* Copies q's pairs into the round's buffers at token `first`, padded to k. */
static void pack_lookup(us_service *s, const serve_req *q, size_t first)
{
    const Ultrashard__LookupRequest *l = q->msg->lookup;
    for (uint32_t t = 0; t < l->n_tokens; t++) {
        size_t dst = (first + t) * s->k, src = (size_t)t * l->k;
        for (uint32_t i = 0; i < s->k; i++) {
            bool real = i < l->k;
            s->rows_buf[dst + i] = real ? l->rows[src + i] : 0;
            s->weights_buf[dst + i] = real ? l->weights[src + i] : 0.0f;
            s->groups_buf[dst + i] = real && l->groups.len ? l->groups.data[src + i] : 0;
        }
    }
}

/* One round of table t over the queued Lookup requests of t that fit in
 * max_batch_tokens (FIFO); the others stay queued. */
static int lookup_round(us_service *s, uint32_t t, us_err *err)
{
    serve_req *batch[1024];
    size_t nb = 0, tokens = 0;
    serve_req **pp = &s->lookups.head, *prev = NULL;
    while (*pp != NULL && nb < 1024) {
        serve_req *q = *pp;
        bool take = q->table == t && q->msg->body_case == ULTRASHARD__REQUEST__BODY_LOOKUP &&
                    tokens + q->tokens <= s->o->max_batch_tokens;
        if (!take) {
            prev = q;
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        if (s->lookups.tail == q)
            s->lookups.tail = prev;
        s->lookups.n--;
        pack_lookup(s, q, tokens);
        batch[nb++] = q;
        tokens += q->tokens;
    }
    if (nb == 0)
        return US_OK;
    double t0 = us_now_s();
    int G = (int)(s->n_groups ? s->n_groups : 1);
    int rc = s->be.lookup(s->be.ctx, (int)t, s->rows_buf, s->weights_buf, s->groups_buf,
                          tokens, s->k, G, s->out_buf, err);
    us_histogram_observe(&s->metrics.lookup_round_s, us_now_s() - t0, 0);
    us_histogram_observe(&s->metrics.batch_tokens, (double)tokens, 1);
    s->metrics.lookup_rounds++;
    for (size_t i = 0, first = 0; i < nb; first += batch[i]->tokens, i++) {
        if (rc == US_OK)
            answer_lookup(s, batch[i], first);
        else
            serve_fail(s, batch[i], ULTRASHARD__STATUS__STATUS_INTERNAL, err ? err->msg : "");
    }
    /* Transport failures end the job; a refused batch (a shard's error
     * answer) only fails its requests. */
    return rc == US_EMPI || rc == US_EFABRIC || rc == US_ENOMEM ? rc : US_OK;
}

/* --- the remote memory layer ----------------------------------------------- */

/* The memory layer of table q->table on the request's h: its own round. */
static int memory_one(us_service *s, serve_req *q, us_err *err)
{
    const Ultrashard__MemoryRequest *mr = q->msg->memory;
    const size_t T = mr->n_tokens, d = s->m->cfg.d_model, sel = s->k;
    uint32_t layer = 0;
    while (s->m->table_of_layer[layer] != (int)q->table)
        layer++;
    int rc = US_OK;
    if (s->mem_ws.block == NULL &&
        (rc = us_workspace_init(&s->mem_ws, &s->m->cfg, s->o->max_batch_tokens, err)) != US_OK)
        return rc;
    float *out = calloc(T * d, sizeof(float));
    if (out == NULL) {
        serve_fail(s, q, ULTRASHARD__STATUS__STATUS_INTERNAL, "memory: out of memory");
        return US_OK;
    }
    memcpy(s->mem_ws.h, mr->queries, T * d * sizeof(float));
    us_err lerr = {0};
    double t0 = us_now_s();
    rc = us_memlayer_begin(s->m, layer, &s->mem_ws, T, &lerr);
    if (rc == US_OK)
        rc = us_memlayer_end(s->m, layer, &s->mem_ws, T, out, &lerr);
    us_histogram_observe(&s->metrics.lookup_round_s, us_now_s() - t0, 0);
    s->metrics.lookup_rounds++;
    if (rc != US_OK) {
        serve_fail(s, q, ULTRASHARD__STATUS__STATUS_INTERNAL, lerr.msg);
        free(out);
        if (err != NULL)
            *err = lerr;
        return rc == US_EMPI || rc == US_EFABRIC ? rc : US_OK;
    }
    const uint64_t *rows;
    const float *weights;
    const uint8_t *groups;
    us_memlayer_selection(s->m, layer, &s->mem_ws, &rows, &weights, &groups);
    Ultrashard__MemoryResponse m = ULTRASHARD__MEMORY_RESPONSE__INIT;
    m.n_tokens = (uint32_t)T;
    m.dim = (uint32_t)d;
    m.k = (uint32_t)sel;
    m.n_rows = m.n_weights = T * sel;
    m.rows = (uint64_t *)rows;
    m.weights = (float *)weights;
    m.groups.len = T * sel;
    m.groups.data = (uint8_t *)groups;
    m.n_output = T * d;
    m.output = out;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_MEMORY;
    r.memory = &m;
    serve_answer(s, q, &r, true);
    free(out);
    return US_OK;
}

/* --- generates ------------------------------------------------------------- */

static serve_req *active_find(const us_service *s, uint64_t tag)
{
    for (uint32_t i = 0; i < s->o->batch_size; i++)
        if (s->active[i] != NULL && (uint64_t)(uintptr_t)s->active[i] == tag)
            return s->active[i];
    return NULL;
}

static int stream_token(void *ctx, uint64_t tag, int32_t token, us_err *err)
{
    (void)err;
    us_service *s = ctx;
    serve_req *q = active_find(s, tag);
    if (q == NULL)
        return US_OK;
    uint32_t tok = (uint32_t)token;
    uint8_t byte = (uint8_t)token;
    Ultrashard__GenerateResponse g = ULTRASHARD__GENERATE_RESPONSE__INIT;
    g.n_tokens = 1;
    g.tokens = &tok;
    g.text.len = 1;
    g.text.data = &byte;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_GENERATE;
    r.generate = &g;
    q->streamed++;
    s->metrics.generated_tokens++;
    serve_answer(s, q, &r, false);
    return US_OK;
}

static int stream_finish(void *ctx, uint64_t tag, const char *finish, size_t prompt_tokens,
                         size_t generated_tokens, us_err *err)
{
    (void)err;
    us_service *s = ctx;
    serve_req *q = active_find(s, tag);
    if (q == NULL)
        return US_OK;
    for (uint32_t i = 0; i < s->o->batch_size; i++)
        if (s->active[i] == q)
            s->active[i] = NULL;
    Ultrashard__GenerateResponse g = ULTRASHARD__GENERATE_RESPONSE__INIT;
    g.done = true;
    g.finish = (char *)finish;
    g.prompt_tokens = (uint32_t)prompt_tokens;
    g.generated_tokens = (uint32_t)generated_tokens;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_GENERATE;
    r.generate = &g;
    serve_answer(s, q, &r, true);
    return US_OK;
}

/* Admits waiting Generate requests into free slots. */
static int admit_generates(us_service *s, us_err *err)
{
    while (s->gens.n > 0 && us_infer_stream_free_slots(s->stream) > 0) {
        serve_req *q = queue_pop(&s->gens);
        uint32_t slot = 0;
        while (s->active[slot] != NULL)
            slot++;
        s->active[slot] = q;
        const Ultrashard__GenerateRequest *g = q->msg->generate;
        us_sampler_params sp = { .temperature = g->temperature,
                                 .top_p = g->top_p > 0 ? g->top_p : 1.0f };
        int rc = us_infer_stream_add(s->stream, &q->prompt, &sp, g->seed,
                                     (uint64_t)(uintptr_t)q, err);
        if (rc != US_OK) {
            s->active[slot] = NULL;
            serve_fail(s, q, ULTRASHARD__STATUS__STATUS_INTERNAL, err ? err->msg : "");
            if (rc == US_ENOMEM)
                return rc;
        }
    }
    return US_OK;
}

/* A failed step leaves the stream unusable: fail its requests, reopen it. */
static int step_failed(us_service *s, const us_err *step_err, us_err *err)
{
    for (uint32_t i = 0; i < s->o->batch_size; i++)
        if (s->active[i] != NULL) {
            serve_req *q = s->active[i];
            s->active[i] = NULL;
            serve_fail(s, q, ULTRASHARD__STATUS__STATUS_INTERNAL, step_err->msg);
        }
    us_infer_stream_close(s->stream);
    us_infer_stream_ops ops = { .ctx = s, .token = stream_token, .finish = stream_finish };
    return us_infer_stream_open(&s->stream, s->m, s->o->batch_size, s->o->max_batch_tokens,
                                &ops, err);
}

static int decode_step(us_service *s, us_err *err)
{
    int rc = admit_generates(s, err);
    if (rc != US_OK || us_infer_stream_active(s->stream) == 0)
        return rc;
    uint64_t before = us_infer_stream_stats(s->stream)->prompt_tokens +
                      us_infer_stream_stats(s->stream)->generated_tokens;
    us_err step_err = {0};
    rc = us_infer_stream_step(s->stream, &step_err);
    const us_infer_stats *st = us_infer_stream_stats(s->stream);
    us_histogram_observe(&s->metrics.batch_tokens,
                         (double)(st->prompt_tokens + st->generated_tokens - before), 1);
    s->metrics.decode_steps++;
    if (rc == US_OK)
        return US_OK;
    if (rc == US_EMPI || rc == US_EFABRIC) {
        if (err != NULL)
            *err = step_err;
        return rc;
    }
    if (s->dist != NULL && (rc = us_memory_dist_sync(s->dist, err)) != US_OK)
        return rc;
    return step_failed(s, &step_err, err);
}

int serve_cycle(us_service *s, us_err *err)
{
    int rc = US_OK;
    s->metrics.cycles++;
    for (uint32_t t = 0; rc == US_OK && t < s->n_tables && s->lookups.n > 0; t++)
        rc = lookup_round(s, t, err);
    serve_req *q;
    while (rc == US_OK && (q = unlink_memory(&s->lookups)) != NULL)
        rc = memory_one(s, q, err);
    if (rc == US_OK && s->dist != NULL)
        rc = us_memory_dist_sync(s->dist, err);
    if (rc == US_OK)
        rc = decode_step(s, err);
    if (rc == US_OK && s->dist != NULL)
        rc = us_memory_dist_sync(s->dist, err);
    s->metrics.queue_depth = s->lookups.n + s->gens.n;
    s->metrics.generates_active = s->stream ? (uint32_t)us_infer_stream_active(s->stream) : 0;
    for (uint32_t t = 0; s->dist != NULL && t < s->n_tables && t < US_METRICS_MAX_TABLES; t++) {
        s->metrics.table_bytes_sent[t] = s->dist->transports[t]->stats.bytes_sent;
        s->metrics.table_bytes_recv[t] = s->dist->transports[t]->stats.bytes_recv;
    }
    return rc;
}

/* --- Stats / Health -------------------------------------------------------- */

static void answer_stats(us_service *s, serve_req *q)
{
    Ultrashard__TableInfo infos[US_METRICS_MAX_TABLES], *ptrs[US_METRICS_MAX_TABLES];
    char names[US_METRICS_MAX_TABLES][24];
    Ultrashard__StatsResponse st = ULTRASHARD__STATS_RESPONSE__INIT;
    uint32_t n = s->n_tables < US_METRICS_MAX_TABLES ? s->n_tables : US_METRICS_MAX_TABLES;
    for (uint32_t t = 0; t < n; t++) {
        ultrashard__table_info__init(&infos[t]);
        snprintf(names[t], sizeof names[t], "table_%u", t);
        infos[t].name = names[t];
        infos[t].rows = s->table_rows[t];
        infos[t].dim = s->dim;
        infos[t].n_groups = s->n_groups ? s->n_groups : 1;
        infos[t].max_k = s->k;
        for (uint32_t l = 0; l < s->m->cfg.n_layers; l++)
            if (s->m->table_of_layer[l] == (int)t)
                infos[t].memory_layer = l;
        ptrs[t] = &infos[t];
    }
    st.coordinator = s->world ? (uint32_t)s->world->coordinator_index : 0;
    st.coordinators = s->world ? (uint32_t)s->world->n_coordinators : 1;
    st.shards = s->world ? (uint32_t)s->world->n_shards : 0;
    st.uptime_ms = (uint64_t)((us_now_s() - s->start_s) * 1000.0);
    st.connections = s->open_clients;
    st.queue_depth = s->lookups.n + s->gens.n;
    st.active_generates = s->stream ? (uint32_t)us_infer_stream_active(s->stream) : 0;
    st.requests_total = s->requests_total;
    st.errors_total = s->errors_total;
    st.cycles = s->metrics.cycles;
    st.n_tables = n;
    st.tables = ptrs;
    st.d_model = s->m->cfg.d_model;
    st.vocab = s->m->cfg.vocab_size;
    st.max_frame_bytes = s->o->max_frame_bytes;
    st.max_request_tokens = s->o->max_request_tokens;
    st.max_lookup_pairs = s->limits.max_lookup_pairs;
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_STATS;
    r.stats = &st;
    serve_answer(s, q, &r, true);
}

void serve_answer_info(us_service *s, serve_req *q)
{
    if (q->msg->body_case == ULTRASHARD__REQUEST__BODY_STATS) {
        answer_stats(s, q);
        return;
    }
    Ultrashard__HealthResponse h = ULTRASHARD__HEALTH_RESPONSE__INIT;
    h.serving = !s->draining;
    h.state = s->draining ? "draining" : "serving";
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.body_case = ULTRASHARD__RESPONSE__BODY_HEALTH;
    r.health = &h;
    serve_answer(s, q, &r, true);
}

/* --- open / close ------------------------------------------------------------ */

int serve_work_open(us_service *s, us_err *err)
{
    const us_model_config *c = &s->m->cfg;
    s->n_tables = us_model_config_memory_layers(c);
    s->k = us_model_config_lookup_pairs(c);
    s->n_groups = us_model_config_lookup_groups(c);
    s->table_rows = calloc(s->n_tables ? s->n_tables : 1, sizeof *s->table_rows);
    s->active = calloc(s->o->batch_size, sizeof *s->active);
    size_t pairs = (size_t)s->o->max_batch_tokens * (s->k ? s->k : 1);
    s->rows_buf = malloc(pairs * sizeof *s->rows_buf);
    s->weights_buf = malloc(pairs * sizeof *s->weights_buf);
    s->groups_buf = malloc(pairs);
    if (!s->table_rows || !s->active || !s->rows_buf || !s->weights_buf || !s->groups_buf)
        return us_err_set(err, US_ENOMEM, "serve: out of memory for lookup buffers");
    for (uint32_t t = 0; t < s->n_tables; t++) {
        uint32_t dim;
        int rc = s->be.table_info(s->be.ctx, (int)t, &s->table_rows[t], &dim, err);
        if (rc != US_OK)
            return rc;
        s->dim = dim;
    }
    size_t out_floats = (size_t)s->o->max_batch_tokens * (s->n_groups ? s->n_groups : 1) *
                        (s->dim > c->d_model ? s->dim : c->d_model);
    if ((s->out_buf = malloc(out_floats * sizeof(float))) == NULL)
        return us_err_set(err, US_ENOMEM, "serve: out of memory for lookup buffers");
    s->metrics.n_tables = s->n_tables;
    us_infer_stream_ops ops = { .ctx = s, .token = stream_token, .finish = stream_finish };
    return us_infer_stream_open(&s->stream, s->m, s->o->batch_size, s->o->max_batch_tokens,
                                &ops, err);
}

void serve_work_close(us_service *s)
{
    serve_req *q;
    while ((q = queue_pop(&s->lookups)) != NULL)
        serve_req_free(q);
    while ((q = queue_pop(&s->gens)) != NULL)
        serve_req_free(q);
    for (uint32_t i = 0; s->active && i < s->o->batch_size; i++)
        serve_req_free(s->active[i]);
    us_infer_stream_close(s->stream);
    us_workspace_free(&s->mem_ws);
    free(s->active);
    free(s->table_rows);
    free(s->rows_buf);
    free(s->weights_buf);
    free(s->groups_buf);
    free(s->out_buf);
}
