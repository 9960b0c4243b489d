/*
 * fuzz_wire.c — libFuzzer harness: gather requests and responses
 * (proto/wire.h), as a shard and a coordinator receive them.
 *
 * Input: byte 0 selects the parser. Even: the rest is a request, parsed with
 * receiver limits, then without. Odd: bytes 1..48 are the request header the
 * coordinator sent (the "asked"), byte 49 the table's element size and
 * scales flag, bytes 50..53 the expected dim, the rest the response. Each
 * message is copied into its own 8-aligned buffer of exactly its length, so
 * any read past it is an AddressSanitizer report. On success the harness
 * reads every array the parser pointed at and checks what it promised.
 */
#include <math.h>

#include "proto/wire.h"
#include "tests/fuzz/fuzz_util.h"

static uint64_t touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    return s;
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    uint8_t *msg = malloc(size ? size : 1);   /* malloc: 16-aligned */
    if (msg == NULL)
        abort();
    memcpy(msg, data, size);
    const us_wire_limits lim = { .max_bytes = 1u << 20, .max_tokens = 4096,
                                 .max_pairs = 1u << 16 };
    for (int pass = 0; pass < 2; pass++) {
        us_wire_req r;
        us_err err = {0};
        int rc = us_wire_req_parse(msg, size, pass == 0 ? &lim : NULL, &r, &err);
        fuzz_check_err(rc, &err);
        if (rc != US_OK)
            continue;
        const us_wire_req_hdr *h = r.hdr;
        FUZZ_CHECK(h->total_bytes == size && size % 8 == 0, "length %zu", size);
        touch(r.rows, (size_t)h->n_rows * 8);
        for (uint32_t p = 0; p < h->n_pairs; p++) {
            FUZZ_CHECK(r.pair_token[p] < h->n_tokens &&
                       (p == 0 || r.pair_token[p - 1] <= r.pair_token[p]),
                       "pair %u token %u", p, r.pair_token[p]);
            FUZZ_CHECK(r.pair_ref[p] < h->n_rows, "pair %u ref %u", p, r.pair_ref[p]);
            FUZZ_CHECK(isfinite(r.pair_weight[p]), "pair %u weight", p);
            FUZZ_CHECK(r.pair_group == NULL || r.pair_group[p] < h->n_groups,
                       "pair %u group", p);
        }
        FUZZ_CHECK(h->mode == US_WIRE_PUSH || h->n_pairs == 0, "mode %u with pairs", h->mode);
    }
    free(msg);
}

static void fuzz_response(const uint8_t *data, size_t size)
{
    if (size < sizeof(us_wire_req_hdr) + 5)
        return;
    us_wire_req_hdr asked;
    memcpy(&asked, data, sizeof asked);
    data += sizeof asked;
    static const size_t elem_sizes[4] = { 1, 2, 4, 3 };
    size_t elem_bytes = elem_sizes[data[0] & 3];
    int with_scales = (data[0] >> 2) & 1;
    uint32_t want_dim;
    memcpy(&want_dim, data + 1, 4);
    data += 5;
    size -= sizeof asked + 5;
    uint8_t *msg = malloc(size ? size : 1);
    if (msg == NULL)
        abort();
    memcpy(msg, data, size);
    us_wire_resp r;
    us_err err = {0};
    us_wire_resp_expect want = { .asked = &asked, .dim = want_dim, .elem_bytes = elem_bytes,
                                 .with_scales = with_scales };
    int rc = us_wire_resp_parse(msg, size, &want, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == US_OK) {
        const us_wire_resp_hdr *h = r.hdr;
        FUZZ_CHECK(h->total_bytes == size, "length %zu", size);
        if (h->status < 0) {
            touch(r.message, r.message_len);
        } else if (h->mode == US_WIRE_PUSH) {
            touch(r.sums, (size_t)h->n_tokens * h->n_groups * h->dim * 4);
        } else if (h->mode == US_WIRE_ROWS) {
            touch(r.row_bytes, (size_t)h->n_rows * h->dim * elem_bytes);
            if (with_scales)
                touch(r.row_scales, (size_t)h->n_rows * 4);
        }
    }
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_response(data + 1, size - 1);
    else
        fuzz_request(data + 1, size - 1);
    return 0;
}
