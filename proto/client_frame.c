/*
 * client_frame.c — client API frames: the incremental reader, packing, and
 * the shape checks of Request/Response (contract in client_frame.h).
 */
#include "proto/client_frame.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/pb_check.h"

void us_frame_reader_init(us_frame_reader *r, uint32_t max_bytes)
{
    memset(r, 0, sizeof *r);
    r->max_bytes = max_bytes ? max_bytes : US_FRAME_DEFAULT_MAX_BYTES;
}

/* The header is complete: check the length, then allocate. */
static int reader_start_payload(us_frame_reader *r, us_err *err)
{
    uint32_t len = (uint32_t)r->header[0] | (uint32_t)r->header[1] << 8 |
                   (uint32_t)r->header[2] << 16 | (uint32_t)r->header[3] << 24;
    if (len == 0)
        return us_err_set(err, US_EPROTO, "frame: length 0 (a frame holds one message)");
    if (len > r->max_bytes)
        return us_err_set(err, US_ERANGE, "frame: length %u bytes exceeds the limit of %u",
                          len, r->max_bytes);
    r->payload = malloc(len);
    if (!r->payload)
        return us_err_set(err, US_ENOMEM, "frame: cannot allocate %u bytes", len);
    r->length = len;
    r->have = 0;
    return US_OK;
}

int us_frame_reader_feed(us_frame_reader *r, const uint8_t *data, size_t n, size_t *used,
                         bool *done, us_err *err)
{
    size_t pos = 0;
    int rc;
    *used = 0;
    *done = r->complete;
    if (r->complete)
        return US_OK;
    while (r->header_have < US_FRAME_HEADER_BYTES && pos < n)
        r->header[r->header_have++] = data[pos++];
    if (r->header_have == US_FRAME_HEADER_BYTES && !r->payload) {
        if ((rc = reader_start_payload(r, err)) != US_OK) {
            *used = pos;
            return rc;
        }
    }
    if (r->payload) {
        size_t take = n - pos;
        if (take > r->length - r->have)
            take = r->length - r->have;
        memcpy(r->payload + r->have, data + pos, take);
        r->have += (uint32_t)take;
        pos += take;
        r->complete = r->have == r->length;
    }
    *used = pos;
    *done = r->complete;
    return US_OK;
}

bool us_frame_reader_partial(const us_frame_reader *r)
{
    return r->header_have > 0 && !r->complete;
}

uint8_t *us_frame_reader_take(us_frame_reader *r, uint32_t *len)
{
    if (!r->complete)
        return NULL;
    uint8_t *p = r->payload;
    *len = r->length;
    uint32_t max = r->max_bytes;
    us_frame_reader_init(r, max);
    return p;
}

void us_frame_reader_free(us_frame_reader *r)
{
    free(r->payload);
    r->payload = NULL;
    r->complete = false;
    r->header_have = 0;
}

static int frame_pack(const ProtobufCMessage *m, uint32_t max_bytes, uint8_t **out,
                      size_t *len, us_err *err)
{
    *out = NULL;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint32_t max = max_bytes ? max_bytes : US_FRAME_DEFAULT_MAX_BYTES;
    if (n > max)
        return us_err_set(err, US_ERANGE, "frame: message of %zu bytes exceeds the limit of %u",
                          n, max);
    uint8_t *buf = malloc(n + US_FRAME_HEADER_BYTES);
    if (!buf)
        return us_err_set(err, US_ENOMEM, "frame: cannot allocate %zu bytes", n);
    buf[0] = (uint8_t)n;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 24);
    protobuf_c_message_pack(m, buf + US_FRAME_HEADER_BYTES);
    *out = buf;
    *len = n + US_FRAME_HEADER_BYTES;
    return US_OK;
}

int us_frame_pack_request(const Ultrashard__Request *m, uint32_t max_bytes, uint8_t **out,
                          size_t *len, us_err *err)
{
    return frame_pack(&m->base, max_bytes, out, len, err);
}

int us_frame_pack_response(const Ultrashard__Response *m, uint32_t max_bytes, uint8_t **out,
                           size_t *len, us_err *err)
{
    return frame_pack(&m->base, max_bytes, out, len, err);
}

int us_frame_unpack_request(const uint8_t *payload, size_t n, Ultrashard__Request **out,
                            us_err *err)
{
    *out = ultrashard__request__unpack(NULL, n, payload);
    if (!*out)
        return us_err_set(err, US_EPROTO, "frame: %zu bytes are not a Request message", n);
    if (!us_pb_field_numbers_valid(&(*out)->base)) {
        ultrashard__request__free_unpacked(*out, NULL);
        *out = NULL;
        return us_err_set(err, US_EPROTO, "frame: Request has a field numbered 0 (%zu bytes)", n);
    }
    return US_OK;
}

/* Shape of a LookupResponse / MemoryResponse / GenerateResponse body. */
static int response_shape(const Ultrashard__Response *r, us_err *err)
{
    if (r->body_case == ULTRASHARD__RESPONSE__BODY_LOOKUP) {
        const Ultrashard__LookupResponse *l = r->lookup;
        uint64_t want = (uint64_t)l->n_tokens * l->n_groups * l->dim;
        if (l->n_sums != want)
            return us_err_set(err, US_EPROTO, "response %llu: lookup sums has %zu floats, "
                              "shape %u x %u x %u needs %llu", (unsigned long long)r->request_id,
                              l->n_sums, l->n_tokens, l->n_groups, l->dim,
                              (unsigned long long)want);
    } else if (r->body_case == ULTRASHARD__RESPONSE__BODY_MEMORY) {
        const Ultrashard__MemoryResponse *m = r->memory;
        uint64_t pairs = (uint64_t)m->n_tokens * m->k;
        if (m->n_rows != pairs || m->n_weights != pairs || m->groups.len != pairs ||
            m->n_output != (uint64_t)m->n_tokens * m->dim)
            return us_err_set(err, US_EPROTO, "response %llu: memory arrays do not match "
                              "%u tokens x k %u x dim %u", (unsigned long long)r->request_id,
                              m->n_tokens, m->k, m->dim);
    } else if (r->body_case == ULTRASHARD__RESPONSE__BODY_GENERATE) {
        const Ultrashard__GenerateResponse *g = r->generate;
        if (g->text.len != g->n_tokens)
            return us_err_set(err, US_EPROTO, "response %llu: generate text has %zu bytes "
                              "for %zu tokens", (unsigned long long)r->request_id,
                              g->text.len, g->n_tokens);
    }
    return US_OK;
}

int us_frame_unpack_response(const uint8_t *payload, size_t n, Ultrashard__Response **out,
                             us_err *err)
{
    Ultrashard__Response *r = ultrashard__response__unpack(NULL, n, payload);
    int rc = US_OK;
    *out = NULL;
    if (!r)
        return us_err_set(err, US_EPROTO, "frame: %zu bytes are not a Response message", n);
    if (!us_pb_field_numbers_valid(&r->base)) {
        ultrashard__response__free_unpacked(r, NULL);
        return us_err_set(err, US_EPROTO, "frame: Response has a field numbered 0 (%zu bytes)",
                          n);
    }
    if (r->version > US_CLIENT_PROTOCOL_VERSION)
        rc = us_err_set(err, US_EVERSION, "response: protocol version %u, this client knows %u",
                        r->version, US_CLIENT_PROTOCOL_VERSION);
    else if (r->version == 0)
        rc = us_err_set(err, US_EPROTO, "response: version 0 (field 1 missing)");
    else if (strcmp(us_status_name((int)r->status), "?") == 0)
        rc = us_err_set(err, US_EPROTO, "response %llu: unknown status %d",
                        (unsigned long long)r->request_id, (int)r->status);
    else
        rc = response_shape(r, err);
    if (rc != US_OK) {
        ultrashard__response__free_unpacked(r, NULL);
        return rc;
    }
    *out = r;
    return US_OK;
}

/* Lookup: n_tokens * k pairs, arrays of that length, groups in range. */
static int check_lookup(const Ultrashard__LookupRequest *l, const us_request_limits *lim,
                        us_err *err)
{
    uint64_t pairs = (uint64_t)l->n_tokens * l->k;
    if (l->table[0] == '\0')
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST, "lookup: table is empty");
    if (l->n_tokens == 0 || l->k == 0)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "lookup: n_tokens %u and k %u must be > 0", l->n_tokens, l->k);
    if (lim->max_request_tokens && l->n_tokens > lim->max_request_tokens)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "lookup: n_tokens %u exceeds the limit of %u", l->n_tokens,
                          lim->max_request_tokens);
    if (lim->max_lookup_pairs && pairs > lim->max_lookup_pairs)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "lookup: %llu pairs (n_tokens x k) exceed the limit of %u",
                          (unsigned long long)pairs, lim->max_lookup_pairs);
    if (l->n_rows != pairs || l->n_weights != pairs)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "lookup: rows (%zu) and weights (%zu) must hold n_tokens x k = %llu",
                          l->n_rows, l->n_weights, (unsigned long long)pairs);
    if (l->n_groups > US_LOOKUP_MAX_GROUPS)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "lookup: n_groups %u exceeds %u", l->n_groups, US_LOOKUP_MAX_GROUPS);
    if (l->groups.len != 0 && l->groups.len != pairs)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "lookup: groups holds %zu bytes, want 0 or %llu", l->groups.len,
                          (unsigned long long)pairs);
    uint32_t groups = l->n_groups ? l->n_groups : 1;
    for (size_t i = 0; i < l->groups.len; i++)
        if (l->groups.data[i] >= groups)
            return us_err_set(err, ULTRASHARD__STATUS__STATUS_OUT_OF_RANGE,
                              "lookup: group %u of pair %zu >= n_groups %u",
                              l->groups.data[i], i, groups);
    return ULTRASHARD__STATUS__STATUS_OK;
}

static int check_memory(const Ultrashard__MemoryRequest *m, const us_request_limits *lim,
                        us_err *err)
{
    if (m->table[0] == '\0')
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST, "memory: table is empty");
    if (m->n_tokens == 0 || m->dim == 0)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "memory: n_tokens %u and dim %u must be > 0", m->n_tokens, m->dim);
    if ((lim->max_request_tokens && m->n_tokens > lim->max_request_tokens) ||
        (lim->max_dim && m->dim > lim->max_dim))
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "memory: %u tokens x dim %u exceed the limits (%u tokens, dim %u)",
                          m->n_tokens, m->dim, lim->max_request_tokens, lim->max_dim);
    if (m->n_queries != (uint64_t)m->n_tokens * m->dim)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "memory: queries holds %zu floats, want n_tokens x dim = %llu",
                          m->n_queries, (unsigned long long)m->n_tokens * m->dim);
    for (size_t i = 0; i < m->n_queries; i++)
        if (!isfinite(m->queries[i]))
            return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                              "memory: query value %zu is not finite", i);
    return ULTRASHARD__STATUS__STATUS_OK;
}

static int check_generate(const Ultrashard__GenerateRequest *g, const us_request_limits *lim,
                          us_err *err)
{
    uint64_t tokens = (uint64_t)g->prompt.len + 1 + g->max_tokens;
    if (lim->max_request_tokens && tokens > lim->max_request_tokens)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "generate: BOS + %zu prompt bytes + max_tokens %u exceed the limit "
                          "of %u tokens", g->prompt.len, g->max_tokens, lim->max_request_tokens);
    if (strlen(g->id) > US_GENERATE_ID_MAX)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_TOO_LARGE,
                          "generate: id of %zu bytes exceeds %u", strlen(g->id),
                          US_GENERATE_ID_MAX);
    if (!isfinite(g->temperature) || g->temperature < 0.0f)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "generate: temperature %g must be finite and >= 0",
                          (double)g->temperature);
    if (!isfinite(g->top_p) || g->top_p < 0.0f || g->top_p > 1.0f)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "generate: top_p %g must be in [0, 1] (0 = 1.0)", (double)g->top_p);
    return ULTRASHARD__STATUS__STATUS_OK;
}

int us_request_check(const Ultrashard__Request *r, const us_request_limits *lim, us_err *err)
{
    static const us_request_limits none = { 0 };
    if (!lim)
        lim = &none;
    if (r->version > US_CLIENT_PROTOCOL_VERSION)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_UNSUPPORTED_VERSION,
                          "request: protocol version %u, this server speaks %u", r->version,
                          US_CLIENT_PROTOCOL_VERSION);
    if (r->version == 0)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "request: version 0 (field 1 missing)");
    if (r->request_id == 0)
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "request: request_id 0 is reserved");
    switch (r->body_case) {
    case ULTRASHARD__REQUEST__BODY_LOOKUP:   return check_lookup(r->lookup, lim, err);
    case ULTRASHARD__REQUEST__BODY_MEMORY:   return check_memory(r->memory, lim, err);
    case ULTRASHARD__REQUEST__BODY_GENERATE: return check_generate(r->generate, lim, err);
    case ULTRASHARD__REQUEST__BODY_AUTH:
    case ULTRASHARD__REQUEST__BODY_STATS:
    case ULTRASHARD__REQUEST__BODY_HEALTH:   return ULTRASHARD__STATUS__STATUS_OK;
    default:
        return us_err_set(err, ULTRASHARD__STATUS__STATUS_BAD_REQUEST,
                          "request %llu: no body (auth, lookup, memory, generate, stats "
                          "or health)", (unsigned long long)r->request_id);
    }
}

bool us_request_idempotent(const Ultrashard__Request *r)
{
    return r->body_case == ULTRASHARD__REQUEST__BODY_LOOKUP ||
           r->body_case == ULTRASHARD__REQUEST__BODY_MEMORY ||
           r->body_case == ULTRASHARD__REQUEST__BODY_STATS ||
           r->body_case == ULTRASHARD__REQUEST__BODY_HEALTH;
}

const char *us_status_name(int status)
{
    static const char *const names[] = {
        "OK", "BAD_REQUEST", "UNAUTHENTICATED", "BUSY", "TOO_LARGE", "NOT_FOUND",
        "INTERNAL", "SHUTTING_DOWN", "UNSUPPORTED_VERSION", "TIMEOUT", "OUT_OF_RANGE",
    };
    if (status < 0 || status >= (int)(sizeof names / sizeof names[0]))
        return "?";
    return names[status];
}

const char *us_request_kind_name(int body_case)
{
    switch (body_case) {
    case ULTRASHARD__REQUEST__BODY_AUTH:     return "auth";
    case ULTRASHARD__REQUEST__BODY_LOOKUP:   return "lookup";
    case ULTRASHARD__REQUEST__BODY_MEMORY:   return "memory";
    case ULTRASHARD__REQUEST__BODY_GENERATE: return "generate";
    case ULTRASHARD__REQUEST__BODY_STATS:    return "stats";
    case ULTRASHARD__REQUEST__BODY_HEALTH:   return "health";
    default:                                 return "none";
    }
}

int us_status_to_code(int status)
{
    switch (status) {
    case ULTRASHARD__STATUS__STATUS_OK:                  return US_OK;
    case ULTRASHARD__STATUS__STATUS_BAD_REQUEST:
    case ULTRASHARD__STATUS__STATUS_UNAUTHENTICATED:     return US_EINVAL;
    case ULTRASHARD__STATUS__STATUS_BUSY:
    case ULTRASHARD__STATUS__STATUS_SHUTTING_DOWN:
    case ULTRASHARD__STATUS__STATUS_TIMEOUT:             return US_EIO;
    case ULTRASHARD__STATUS__STATUS_TOO_LARGE:
    case ULTRASHARD__STATUS__STATUS_OUT_OF_RANGE:        return US_ERANGE;
    case ULTRASHARD__STATUS__STATUS_NOT_FOUND:           return US_ENOTFOUND;
    case ULTRASHARD__STATUS__STATUS_UNSUPPORTED_VERSION: return US_EVERSION;
    default:                                             return US_EPROTO;
    }
}
