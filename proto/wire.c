/* wire.c — layout and validation of gather messages (see wire.h). */
#include "proto/wire.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HDR_BYTES 48u

uint64_t us_wire_req_bytes(uint32_t n_rows, uint32_t n_pairs, int with_groups)
{
    /* All counts are u32, so every term below fits in u64 without overflow. */
    uint64_t n = HDR_BYTES;
    n += (uint64_t)n_rows * 8u;
    n += (uint64_t)n_pairs * (4u + 4u + 4u + (with_groups ? 1u : 0u));
    return us_wire_pad8(n);
}

uint64_t us_wire_resp_push_bytes(uint32_t n_tokens, uint32_t n_groups, uint32_t dim)
{
    /* u32^3 may overflow u64 only beyond 2^64 / 4: reject those. */
    unsigned __int128 n = (unsigned __int128)n_tokens * n_groups * dim * 4u + HDR_BYTES;
    if (n > UINT64_MAX)
        return 0;
    return (uint64_t)n;
}

uint64_t us_wire_resp_rows_bytes(uint32_t n_rows, uint32_t dim, size_t elem_bytes,
                                 int with_scales)
{
    unsigned __int128 n = (unsigned __int128)n_rows * dim * elem_bytes;
    if (with_scales)
        n += (unsigned __int128)n_rows * 4u;
    n += HDR_BYTES + 7u;
    if (n > UINT64_MAX)
        return 0;
    return us_wire_pad8((uint64_t)n - 7u);
}

/* Points the array fields of *out at their places after the header. */
static void req_layout(const uint8_t *base, const us_wire_req_hdr *h, us_wire_req *out)
{
    const uint8_t *p = base + HDR_BYTES;
    out->hdr = h;
    out->rows = (const uint64_t *)p;
    p += (size_t)h->n_rows * 8u;
    out->pair_token = (const uint32_t *)p;
    p += (size_t)h->n_pairs * 4u;
    out->pair_ref = (const uint32_t *)p;
    p += (size_t)h->n_pairs * 4u;
    out->pair_weight = (const float *)p;
    p += (size_t)h->n_pairs * 4u;
    out->pair_group = (h->flags & US_WIRE_F_GROUPS) ? p : NULL;
}

int us_wire_req_init(void *buf, uint64_t buf_bytes, const us_wire_req_desc *d,
                     us_wire_req *out, us_err *err)
{
    if (d->mode > US_WIRE_ROWS || (d->flags & ~US_WIRE_REQ_FLAGS) != 0)
        return us_err_set(err, US_EINVAL, "wire request: bad mode %u or flags 0x%x",
                          d->mode, d->flags);
    if (d->n_groups < 1 || d->n_groups > US_WIRE_MAX_GROUPS)
        return us_err_set(err, US_EINVAL, "wire request: n_groups %u outside [1, %d]",
                          d->n_groups, US_WIRE_MAX_GROUPS);
    uint64_t total = us_wire_req_bytes(d->n_rows, d->n_pairs, d->flags & US_WIRE_F_GROUPS);
    if (total > buf_bytes || ((uintptr_t)buf & 7u) != 0)
        return us_err_set(err, US_EINVAL, "wire request: buffer of %llu bytes too small "
                          "or misaligned for %llu", (unsigned long long)buf_bytes,
                          (unsigned long long)total);
    /* d may point into buf (a sender re-deriving the array pointers of a
     * header it wrote), so read it whole before the header is rewritten */
    us_wire_req_desc v = *d;
    us_wire_req_hdr *h = buf;
    memset(h, 0, HDR_BYTES);
    h->magic = US_WIRE_REQ_MAGIC;
    h->version = US_WIRE_VERSION;
    h->mode = v.mode;
    h->flags = v.flags;
    h->table_id = v.table_id;
    h->n_tokens = v.n_tokens;
    h->n_rows = v.n_rows;
    h->n_pairs = v.n_pairs;
    h->n_groups = v.n_groups;
    h->batch_id = v.batch_id;
    h->total_bytes = total;
    req_layout(buf, h, out);
    /* zero the tail padding so messages are deterministic */
    uint64_t used = HDR_BYTES + (uint64_t)v.n_rows * 8u +
                    (uint64_t)v.n_pairs * (12u + ((v.flags & US_WIRE_F_GROUPS) ? 1u : 0u));
    memset((uint8_t *)buf + used, 0, total - used);
    return US_OK;
}

int us_wire_req_parse(const void *buf, uint64_t len, const us_wire_limits *lim,
                      us_wire_req *out, us_err *err)
{
    if (buf == NULL || len < HDR_BYTES)
        return us_err_set(err, US_EPROTO, "wire request: %llu bytes, shorter than the "
                          "%u-byte header", (unsigned long long)len, HDR_BYTES);
    if (((uintptr_t)buf & 7u) != 0)
        return us_err_set(err, US_EPROTO, "wire request: buffer not 8-byte aligned");
    const us_wire_req_hdr *h = buf;
    if (h->magic != US_WIRE_REQ_MAGIC)
        return us_err_set(err, US_EPROTO, "wire request: bad magic 0x%08x", h->magic);
    if (h->version != US_WIRE_VERSION)
        return us_err_set(err, US_EVERSION, "wire request: version %u, this build "
                          "speaks %d", h->version, US_WIRE_VERSION);
    if (h->mode > US_WIRE_ROWS)
        return us_err_set(err, US_EPROTO, "wire request: unknown mode %u", h->mode);
    if ((h->flags & ~US_WIRE_REQ_FLAGS) != 0 || h->reserved != 0)
        return us_err_set(err, US_EPROTO, "wire request: unknown flags 0x%x or "
                          "reserved %u", h->flags, h->reserved);
    if (h->n_groups < 1 || h->n_groups > US_WIRE_MAX_GROUPS)
        return us_err_set(err, US_EPROTO, "wire request: n_groups %u outside [1, %d]",
                          h->n_groups, US_WIRE_MAX_GROUPS);
    uint64_t want = us_wire_req_bytes(h->n_rows, h->n_pairs, h->flags & US_WIRE_F_GROUPS);
    if (h->total_bytes != len || want != len)
        return us_err_set(err, US_EPROTO, "wire request batch %llu: length %llu, header "
                          "says %llu, counts (rows %u, pairs %u) need %llu",
                          (unsigned long long)h->batch_id, (unsigned long long)len,
                          (unsigned long long)h->total_bytes, h->n_rows, h->n_pairs,
                          (unsigned long long)want);
    if (lim != NULL && (len > lim->max_bytes || h->n_tokens > lim->max_tokens ||
                        h->n_pairs > lim->max_pairs))
        return us_err_set(err, US_ERANGE, "wire request batch %llu: %llu bytes, %u tokens, "
                          "%u pairs exceed the limits (%llu bytes, %u tokens, %u pairs)",
                          (unsigned long long)h->batch_id, (unsigned long long)len,
                          h->n_tokens, h->n_pairs, (unsigned long long)lim->max_bytes,
                          lim->max_tokens, lim->max_pairs);
    if (h->mode != US_WIRE_PUSH && h->n_pairs != 0)
        return us_err_set(err, US_EPROTO, "wire request batch %llu: mode %u carries %u "
                          "pairs (only PUSH may)", (unsigned long long)h->batch_id,
                          h->mode, h->n_pairs);
    if (h->mode == US_WIRE_NOP && (h->n_rows != 0 || h->n_tokens != 0))
        return us_err_set(err, US_EPROTO, "wire request batch %llu: NOP with %u rows, "
                          "%u tokens", (unsigned long long)h->batch_id, h->n_rows,
                          h->n_tokens);
    us_wire_req r;
    req_layout(buf, h, &r);
    uint32_t prev = 0;
    for (uint32_t p = 0; p < h->n_pairs; p++) {
        uint32_t t = r.pair_token[p];
        if (t >= h->n_tokens || t < prev)
            return us_err_set(err, US_EPROTO, "wire request batch %llu: pair %u: token "
                              "%u out of range [0, %u) or not sorted (previous %u)",
                              (unsigned long long)h->batch_id, p, t, h->n_tokens, prev);
        prev = t;
        if (r.pair_ref[p] >= h->n_rows)
            return us_err_set(err, US_EPROTO, "wire request batch %llu: pair %u: row "
                              "index %u >= n_rows %u", (unsigned long long)h->batch_id,
                              p, r.pair_ref[p], h->n_rows);
        if (!isfinite(r.pair_weight[p]))
            return us_err_set(err, US_EPROTO, "wire request batch %llu: pair %u: weight "
                              "is not finite", (unsigned long long)h->batch_id, p);
        if (r.pair_group != NULL && r.pair_group[p] >= h->n_groups)
            return us_err_set(err, US_EPROTO, "wire request batch %llu: pair %u: group "
                              "%u >= n_groups %u", (unsigned long long)h->batch_id, p,
                              r.pair_group[p], h->n_groups);
    }
    *out = r;
    return US_OK;
}

void us_wire_resp_init(void *buf, const us_wire_resp_desc *d)
{
    us_wire_resp_hdr *h = buf;
    memset(h, 0, HDR_BYTES);
    h->magic = US_WIRE_RESP_MAGIC;
    h->version = US_WIRE_VERSION;
    h->mode = d->mode;
    h->flags = d->flags;
    h->status = US_OK;
    h->table_id = d->table_id;
    h->n_tokens = d->n_tokens;
    h->n_groups = d->n_groups;
    h->dim = d->dim;
    h->n_rows = d->n_rows;
    h->batch_id = d->batch_id;
    h->total_bytes = d->total_bytes;
}

int us_wire_resp_error(void **out, uint64_t *out_len, const us_wire_resp_desc *d,
                       const us_err *cause)
{
    const char *msg = cause && cause->msg[0] ? cause->msg : "unknown error";
    size_t msg_len = strnlen(msg, US_ERR_MSG_BYTES - 1);
    uint64_t total = HDR_BYTES + msg_len;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return US_ENOMEM;
    us_wire_resp_init(buf, &(us_wire_resp_desc){ .mode = d->mode, .flags = d->flags,
                                                 .table_id = d->table_id,
                                                 .batch_id = d->batch_id,
                                                 .total_bytes = total });
    int code = cause && cause->code < 0 ? cause->code : US_EPROTO;
    ((us_wire_resp_hdr *)buf)->status = code;
    memcpy(buf + HDR_BYTES, msg, msg_len);
    *out = buf;
    *out_len = total;
    return US_OK;
}

int us_wire_resp_parse(const void *buf, uint64_t len, const us_wire_resp_expect *expect,
                       us_wire_resp *out, us_err *err)
{
    const us_wire_req_hdr *asked = expect->asked;
    uint32_t want_dim = expect->dim;
    size_t elem_bytes = expect->elem_bytes;
    int with_scales = expect->with_scales;
    memset(out, 0, sizeof *out);
    if (buf == NULL || len < HDR_BYTES || ((uintptr_t)buf & 7u) != 0)
        return us_err_set(err, US_EPROTO, "wire response: %llu bytes, shorter than the "
                          "header or misaligned", (unsigned long long)len);
    const us_wire_resp_hdr *h = buf;
    if (h->magic != US_WIRE_RESP_MAGIC)
        return us_err_set(err, US_EPROTO, "wire response: bad magic 0x%08x", h->magic);
    if (h->version != US_WIRE_VERSION)
        return us_err_set(err, US_EVERSION, "wire response: version %u, this build "
                          "speaks %d", h->version, US_WIRE_VERSION);
    if ((h->flags & ~US_WIRE_RESP_FLAGS) != 0 || h->total_bytes != len)
        return us_err_set(err, US_EPROTO, "wire response: flags 0x%x or length %llu "
                          "(header says %llu) invalid", h->flags,
                          (unsigned long long)len, (unsigned long long)h->total_bytes);
    if (h->batch_id != asked->batch_id || h->table_id != asked->table_id)
        return us_err_set(err, US_EPROTO, "wire response: answers table %u batch %llu, "
                          "asked table %u batch %llu", h->table_id,
                          (unsigned long long)h->batch_id, asked->table_id,
                          (unsigned long long)asked->batch_id);
    out->hdr = h;
    if (h->status < 0) {
        out->message = (const char *)buf + HDR_BYTES;
        out->message_len = len - HDR_BYTES;
        return US_OK;
    }
    if (h->status != US_OK || h->mode != asked->mode)
        return us_err_set(err, US_EPROTO, "wire response batch %llu: status %d, mode %u "
                          "(asked %u)", (unsigned long long)h->batch_id, h->status,
                          h->mode, asked->mode);
    uint64_t want;
    switch (h->mode) {
    case US_WIRE_NOP:
        want = HDR_BYTES;
        break;
    case US_WIRE_PUSH:
        if (h->n_tokens != asked->n_tokens || h->n_groups != asked->n_groups ||
            h->dim != want_dim)
            return us_err_set(err, US_EPROTO, "wire response batch %llu: %u tokens x %u "
                              "groups x %u dims, asked %u x %u x %u",
                              (unsigned long long)h->batch_id, h->n_tokens, h->n_groups,
                              h->dim, asked->n_tokens, asked->n_groups, want_dim);
        want = us_wire_resp_push_bytes(h->n_tokens, h->n_groups, h->dim);
        out->sums = (const float *)((const uint8_t *)buf + HDR_BYTES);
        break;
    case US_WIRE_ROWS:
        if (h->n_rows != asked->n_rows || h->dim != want_dim)
            return us_err_set(err, US_EPROTO, "wire response batch %llu: %u rows x %u "
                              "dims, asked %u x %u", (unsigned long long)h->batch_id,
                              h->n_rows, h->dim, asked->n_rows, want_dim);
        want = us_wire_resp_rows_bytes(h->n_rows, h->dim, elem_bytes, with_scales);
        out->row_bytes = (const uint8_t *)buf + HDR_BYTES;
        if (with_scales) {
            out->row_scales = (const float *)out->row_bytes;
            out->row_bytes += (size_t)h->n_rows * 4u;
        }
        break;
    default:
        return us_err_set(err, US_EPROTO, "wire response: unknown mode %u", h->mode);
    }
    if (want != len)
        return us_err_set(err, US_EPROTO, "wire response batch %llu: length %llu, counts "
                          "need %llu", (unsigned long long)h->batch_id,
                          (unsigned long long)len, (unsigned long long)want);
    return US_OK;
}

int us_wire_buf_append(us_wire_buf *b, uint64_t bytes, uint64_t *at, us_err *err)
{
    uint64_t start = us_wire_pad8(b->len);
    if (start + bytes < start)
        return us_err_set(err, US_ENOMEM, "wire buffer: %llu bytes overflow",
                          (unsigned long long)bytes);
    uint64_t need = start + bytes;
    if (need > b->cap) {
        uint64_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap) != 0)
            return us_err_set(err, US_ENOMEM, "wire buffer of %llu bytes",
                              (unsigned long long)cap);
        if (b->len)
            memcpy(p, b->data, b->len);
        free(b->data);
        b->data = p;
        b->cap = cap;
    }
    if (start > b->len)
        memset(b->data + b->len, 0, start - b->len);
    b->len = need;
    *at = start;
    return US_OK;
}

void us_wire_buf_free(us_wire_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
