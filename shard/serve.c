/* serve.c — validate a gather request, compute, answer (see serve.h). */
#include "shard/serve.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gather.h"

static void init_common(us_server *s, uint32_t table_id, int shard_index,
                        const us_wire_limits *limits, int n_threads)
{
    memset(s, 0, sizeof *s);
    s->table_id = table_id;
    s->shard_index = shard_index;
    s->n_threads = n_threads;
    if (limits != NULL)
        s->limits = *limits;
    else
        s->limits = (us_wire_limits){ UINT64_MAX, UINT32_MAX, UINT32_MAX };
}

int us_server_init(us_server *s, uint32_t table_id, int shard_index,
                   const us_rows_view *view, const us_wire_limits *limits,
                   int n_threads, us_err *err)
{
    memset(s, 0, sizeof *s);
    int rc = us_rows_view_check(view, err);
    if (rc != US_OK)
        return us_err_prefix(err, "shard %d table %u", shard_index, table_id);
    init_common(s, table_id, shard_index, limits, n_threads);
    s->view = view;
    s->dtype = view->dtype;
    s->dim = view->dim;
    s->rows = view->rows;
    return US_OK;
}

int us_server_init_synth(us_server *s, int shard_index, us_synth_source *src,
                         const us_wire_limits *limits, int n_threads, us_err *err)
{
    memset(s, 0, sizeof *s);
    if (src == NULL || src->held == NULL)
        return us_err_set(err, US_EINVAL, "shard %d: synthetic server without a source",
                          shard_index);
    init_common(s, src->spec.table_id, shard_index, limits, n_threads);
    s->synth = src;
    s->dtype = src->spec.dtype;
    s->dim = src->cols;
    s->rows = src->spec.rows;
    return US_OK;
}

void us_server_attach_store(us_server *s, const us_store *store, size_t index)
{
    s->store = store;
    s->store_table = index;
}

void us_server_free(us_server *s)
{
    free(s->pad_rows);
    free(s->pad_weights);
    free(s->pad_groups);
    us_synth_batch_free(&s->synth_batch);
    s->pad_rows = NULL;
    s->pad_weights = NULL;
    s->pad_groups = NULL;
    s->pad_cap = 0;
}

/* Every row must exist and be held here: checked before any work so the
 * error names the row and the answer is all-or-nothing. */
static int check_rows(const us_server *s, const us_wire_req *r, us_err *err)
{
    const us_rows_view *v = s->view;
    for (uint32_t i = 0; i < r->hdr->n_rows; i++) {
        uint64_t row = r->rows[i];
        if (row >= s->rows)
            return us_err_set(err, US_ERANGE, "shard %d table %u batch %" PRIu64 ": row "
                              "%" PRIu64 " out of range (table has %" PRIu64 " rows)",
                              s->shard_index, s->table_id, r->hdr->batch_id, row, s->rows);
        if (v != NULL ? v->blocks[row >> v->block_bits] == NULL ||
                            (v->dtype == US_DTYPE_INT8 &&
                             v->block_scales[row >> v->block_bits] == NULL)
                      : !us_synth_source_holds(s->synth, row))
            return us_err_set(err, US_ENOTFOUND, "shard %d table %u batch %" PRIu64 ": row "
                              "%" PRIu64 " (block %" PRIu64 ") is not held by this shard",
                              s->shard_index, s->table_id, r->hdr->batch_id, row,
                              row >> (v != NULL ? v->block_bits : s->synth->spec.block_bits));
    }
    if (s->store != NULL && us_store_check_rows(s->store, s->store_table, r->rows,
                                                r->hdr->n_rows, err) != US_OK)
        return us_err_prefix(err, "shard %d batch %" PRIu64, s->shard_index,
                             r->hdr->batch_id);
    return US_OK;
}

static int grow_pad(us_server *s, uint64_t n, us_err *err)
{
    if (n <= s->pad_cap)
        return US_OK;
    uint64_t *rows = realloc(s->pad_rows, n * sizeof *rows);
    if (rows != NULL)
        s->pad_rows = rows;
    float *w = realloc(s->pad_weights, n * sizeof *w);
    if (w != NULL)
        s->pad_weights = w;
    uint8_t *g = realloc(s->pad_groups, n);
    if (g != NULL)
        s->pad_groups = g;
    if (rows == NULL || w == NULL || g == NULL)
        return us_err_set(err, US_ENOMEM, "shard %d: scratch for %" PRIu64 " pairs",
                          s->shard_index, n);
    s->pad_cap = n;
    return US_OK;
}

/* Longest run of pairs of one token (pair_token is non-decreasing: parse
 * checked it). */
static uint32_t max_pairs_per_token(const us_wire_req *r)
{
    uint32_t kmax = 0, run = 0;
    for (uint32_t p = 0; p < r->hdr->n_pairs; p++) {
        run = (p > 0 && r->pair_token[p] == r->pair_token[p - 1]) ? run + 1 : 1;
        kmax = run > kmax ? run : kmax;
    }
    return kmax;
}

/* Lays the pairs out as n_tokens x kmax in one pass (tokens have different
 * pair counts here): each token's pairs, then padding pairs of weight 0,
 * which the kernel skips without touching the accumulator. by_ref: row ids
 * are the indices into the request's row list (the synth scratch). */
static void pad_pairs(us_server *s, const us_wire_req *r, uint32_t kmax, bool by_ref)
{
    const us_wire_req_hdr *h = r->hdr;
    uint64_t filler = by_ref ? 0 : r->rows[0];   /* any held row: its weight is 0 */
    bool groups = r->pair_group != NULL;
    uint32_t p = 0;
    for (uint32_t t = 0; t < h->n_tokens; t++) {
        uint64_t at = (uint64_t)t * kmax, end = at + kmax;
        for (; p < h->n_pairs && r->pair_token[p] == t; p++, at++) {
            s->pad_rows[at] = by_ref ? r->pair_ref[p] : r->rows[r->pair_ref[p]];
            s->pad_weights[at] = r->pair_weight[p];
            s->pad_groups[at] = groups ? r->pair_group[p] : 0;
        }
        for (; at < end; at++) {
            s->pad_rows[at] = filler;
            s->pad_weights[at] = 0.0f;
            s->pad_groups[at] = 0;
        }
    }
}

/* PUSH: padded pairs, then one gather call. */
static int serve_push(us_server *s, const us_wire_req *r, float *sums, us_err *err)
{
    const us_wire_req_hdr *h = r->hdr;
    uint32_t kmax = max_pairs_per_token(r);
    size_t out_floats = (size_t)h->n_tokens * h->n_groups * s->dim;
    if (kmax == 0) {
        memset(sums, 0, out_floats * sizeof *sums);
        return US_OK;
    }
    uint64_t n = (uint64_t)h->n_tokens * kmax;
    int rc = grow_pad(s, n, err);
    if (rc != US_OK)
        return rc;
    const us_rows_view *v = s->view;
    if (s->synth != NULL) {   /* the request's rows, computed; pairs index them */
        rc = us_synth_batch_fill(&s->synth_batch, s->synth, r->rows, h->n_rows, err);
        if (rc != US_OK)
            return rc;
        v = &s->synth_batch.view;
    }
    pad_pairs(s, r, kmax, s->synth != NULL);
    /* check_rows vetted every row (block and int8 scales held), the wire
     * parse every pair's row index and group, and the fillers are held
     * rows: the kernel's own per-pair check would be a second pass. */
    return us_gather_sum_prechecked(sums, v, s->pad_rows, s->pad_weights,
                                    h->n_groups == 1 ? NULL : s->pad_groups, h->n_tokens,
                                    kmax, (int)h->n_groups, s->n_threads, err);
}

/* What a request's header says, read before validation so that even a
 * malformed request gets an error answer the coordinator can match. */
typedef struct req_echo {
    uint8_t  mode;
    uint32_t table_id;
    uint64_t batch_id;
} req_echo;

static req_echo read_echo(const void *req, uint64_t len, uint8_t *req_flags)
{
    req_echo echo = { .mode = US_WIRE_NOP };
    if (req_flags)
        *req_flags = 0;
    if (len < sizeof(us_wire_req_hdr) || ((uintptr_t)req & 7u) != 0)
        return echo;
    const us_wire_req_hdr *h = req;
    echo.mode = h->mode <= US_WIRE_ROWS ? h->mode : US_WIRE_NOP;
    echo.table_id = h->table_id;
    echo.batch_id = h->batch_id;
    if (req_flags && h->magic == US_WIRE_REQ_MAGIC)
        *req_flags = h->flags & US_WIRE_REQ_FLAGS;
    return echo;
}

/* Parses the request and checks it against this server's table and rows. */
static int check_request(us_server *s, const void *req, uint64_t len, us_wire_req *r,
                         us_err *why)
{
    int rc = us_wire_req_parse(req, len, &s->limits, r, why);
    if (rc == US_OK && r->hdr->table_id != s->table_id)
        rc = us_err_set(why, US_ENOTFOUND, "shard %d: table %u is not served here "
                        "(this shard serves table %u)", s->shard_index,
                        r->hdr->table_id, s->table_id);
    if (rc == US_OK)
        rc = check_rows(s, r, why);
    return rc;
}

/* Size of the answer to a valid request; 0 when it would overflow. */
static uint64_t answer_bytes(const us_server *s, const us_wire_req_hdr *h)
{
    if (h->mode == US_WIRE_PUSH)
        return us_wire_resp_push_bytes(h->n_tokens, h->n_groups, s->dim);
    if (h->mode == US_WIRE_ROWS)
        return us_wire_resp_rows_bytes(h->n_rows, s->dim, us_dtype_size(s->dtype),
                                       s->dtype == US_DTYPE_INT8);
    return sizeof(us_wire_resp_hdr);
}

/* Writes the header and payload of the answer to r into resp (total bytes). */
static int fill_answer(us_server *s, const us_wire_req *r, uint8_t resp_flags, uint8_t *resp,
                       uint64_t total, us_err *why)
{
    const us_wire_req_hdr *h = r->hdr;
    us_wire_resp_init(resp, &(us_wire_resp_desc){
        .mode = h->mode, .flags = resp_flags, .table_id = h->table_id,
        .batch_id = h->batch_id,
        .n_tokens = h->mode == US_WIRE_PUSH ? h->n_tokens : 0,
        .n_groups = h->mode == US_WIRE_PUSH ? h->n_groups : 0,
        .dim = h->mode == US_WIRE_NOP ? 0 : s->dim,
        .n_rows = h->mode == US_WIRE_ROWS ? h->n_rows : 0, .total_bytes = total });
    uint8_t *payload = resp + sizeof(us_wire_resp_hdr);
    if (h->mode == US_WIRE_PUSH)
        return serve_push(s, r, (float *)payload, why);
    if (h->mode != US_WIRE_ROWS || h->n_rows == 0)
        return US_OK;
    float *scales = NULL;
    if (s->dtype == US_DTYPE_INT8) {
        scales = (float *)payload;
        payload += (size_t)h->n_rows * 4u;
    }
    uint64_t row_data = (uint64_t)h->n_rows * s->dim * us_dtype_size(s->dtype);
    memset(payload + row_data, 0, total - (uint64_t)(payload - resp) - row_data);
    if (s->synth != NULL)
        return us_synth_source_rows(s->synth, payload, scales, r->rows, h->n_rows, why);
    return us_gather_copy(payload, scales, s->view, r->rows, h->n_rows, s->n_threads, why);
}

/* Appends an error answer carrying `why` to out. */
static int append_rejection(us_server *s, const req_echo *echo, uint8_t resp_flags,
                            const us_err *why, us_wire_buf *out, us_err *err)
{
    void *msg = NULL;
    uint64_t msg_len = 0, at;
    us_wire_resp_desc d = { .mode = echo->mode, .flags = resp_flags,
                            .table_id = echo->table_id, .batch_id = echo->batch_id };
    if (us_wire_resp_error(&msg, &msg_len, &d, why) != US_OK)
        return us_err_set(err, US_ENOMEM, "shard %d: error response", s->shard_index);
    int rc = us_wire_buf_append(out, msg_len, &at, err);
    if (rc == US_OK)
        memcpy(out->data + at, msg, msg_len);
    free(msg);
    return rc;
}

int us_serve_request(us_server *s, const void *req, uint64_t len, uint8_t resp_flags,
                     us_wire_buf *out, bool *rejected, uint8_t *req_flags, us_err *err)
{
    us_err why = {0};
    us_wire_req r;
    s->stats.requests++;
    req_echo echo = read_echo(req, len, req_flags);
    int rc = check_request(s, req, len, &r, &why);
    if (rc != US_OK)
        goto reject;
    const us_wire_req_hdr *h = r.hdr;
    uint64_t at, total = answer_bytes(s, h);
    if (total == 0 || total > s->limits.max_bytes) {
        rc = us_err_set(&why, US_ERANGE, "shard %d batch %" PRIu64 ": answer of %" PRIu64
                        " bytes exceeds the message limit", s->shard_index, h->batch_id,
                        total);
        goto reject;
    }
    if ((rc = us_wire_buf_append(out, total, &at, err)) != US_OK)
        return rc;
    rc = fill_answer(s, &r, resp_flags, out->data + at, total, &why);
    if (rc != US_OK) {
        out->len = at;   /* drop the half-built answer */
        if (rc == US_ENOMEM)
            return us_err_set(err, rc, "%s", why.msg);
        goto reject;
    }
    s->stats.pairs += h->n_pairs;
    s->stats.rows += h->n_rows;
    s->stats.tokens += h->n_tokens;
    if (rejected)
        *rejected = false;
    return US_OK;

reject:
    s->stats.rejected++;
    s->last_error = why;
    if (rejected)
        *rejected = true;
    return append_rejection(s, &echo, resp_flags, &why, out, err);
}
