/*
 * fuzz_client_frame.c — libFuzzer harness: the bytes a client sends to
 * `ultrashard serve` on one connection, through the server's frame parser
 * (proto/client_frame.h): the incremental reader fed in chunks whose sizes
 * come from byte 0, then each complete frame unpacked and checked
 * (us_request_check, limits as a small server's), and the same payload as a
 * Response (the client's parser).
 *
 * Checks what the server relies on: lengths over the limit are refused
 * before anything is allocated, every error names itself (fuzz_check_err;
 * request checks return a known status with a message), an accepted Lookup's
 * arrays match n_tokens x k and its groups are < n_groups, an accepted
 * Memory's queries are n_tokens x dim, and an accepted request packs and
 * unpacks to the same shape.
 */
#include "proto/client_frame.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_FRAME 4096

static void check_accepted(const Ultrashard__Request *r)
{
    if (r->body_case == ULTRASHARD__REQUEST__BODY_LOOKUP) {
        const Ultrashard__LookupRequest *l = r->lookup;
        uint64_t pairs = (uint64_t)l->n_tokens * l->k;
        FUZZ_CHECK(l->n_rows == pairs && l->n_weights == pairs, "lookup arrays vs shape");
        FUZZ_CHECK(l->groups.len == 0 || l->groups.len == pairs, "groups length");
        for (size_t i = 0; i < l->groups.len; i++)
            FUZZ_CHECK(l->groups.data[i] < (l->n_groups ? l->n_groups : 1), "group id");
    } else if (r->body_case == ULTRASHARD__REQUEST__BODY_MEMORY) {
        FUZZ_CHECK(r->memory->n_queries == (uint64_t)r->memory->n_tokens * r->memory->dim,
                   "memory queries vs shape");
    }
    uint8_t *buf;
    size_t len;
    us_err err = {0};
    int rc = us_frame_pack_request(r, 0, &buf, &len, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return;
    Ultrashard__Request *again = NULL;
    rc = us_frame_unpack_request(buf + US_FRAME_HEADER_BYTES, len - US_FRAME_HEADER_BYTES, &again,
                                 &err);
    FUZZ_CHECK(rc == US_OK, "repacked request does not unpack: %s", err.msg);
    FUZZ_CHECK(again->body_case == r->body_case && again->request_id == r->request_id,
               "repacked request differs");
    ultrashard__request__free_unpacked(again, NULL);
    free(buf);
}

static void one_frame(const uint8_t *p, uint32_t n)
{
    us_err err = {0};
    Ultrashard__Request *r = NULL;
    int rc = us_frame_unpack_request(p, n, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == US_OK) {
        us_request_limits lim = { .max_request_tokens = 64, .max_lookup_pairs = 512,
                                  .max_dim = 128 };
        us_err cerr = {0};
        int st = us_request_check(r, &lim, &cerr);
        FUZZ_CHECK(strcmp(us_status_name(st), "?") != 0, "unknown status %d", st);
        FUZZ_CHECK(st == 0 || cerr.msg[0] != '\0', "status %d without a message", st);
        if (st == 0)
            check_accepted(r);
        ultrashard__request__free_unpacked(r, NULL);
    }
    Ultrashard__Response *s = NULL;
    rc = us_frame_unpack_response(p, n, &s, &err);
    fuzz_check_err(rc, &err);
    if (rc == US_OK)
        ultrashard__response__free_unpacked(s, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 16) + 1, pos = 1;
    us_frame_reader rd;
    us_frame_reader_init(&rd, MAX_FRAME);
    while (pos < size) {
        size_t n = size - pos < chunk ? size - pos : chunk, used;
        bool done;
        us_err err = {0};
        int rc = us_frame_reader_feed(&rd, data + pos, n, &used, &done, &err);
        fuzz_check_err(rc, &err);
        if (rc != US_OK) {
            FUZZ_CHECK(rd.payload == NULL || rc != US_ERANGE, "allocated before refusing");
            break;
        }
        FUZZ_CHECK(used <= n && (used > 0 || done), "reader made no progress");
        pos += used;
        if (done) {
            uint32_t len;
            uint8_t *p = us_frame_reader_take(&rd, &len);
            FUZZ_CHECK(p != NULL && len > 0 && len <= MAX_FRAME, "bad frame of %u", len);
            one_frame(p, len);
            free(p);
        }
    }
    us_frame_reader_free(&rd);
    return 0;
}
