/*
 * wire.h — the hot-path gather protocol between coordinators and shards.
 *
 * Hot-path payloads are flat arrays, not protobuf: one request message from a
 * coordinator to a shard per lookup round, one response back. Both sides run
 * on the same architecture (host byte order; the magic detects a mismatch).
 * Every array starts 8-byte aligned so a received buffer is read in place.
 *
 * Request (coordinator -> shard), total_bytes long:
 *     us_wire_req_hdr                      48 bytes
 *     uint64_t rows[n_rows]                unique rows asked for (deduplicated)
 *     uint32_t pair_token[n_pairs]         token index in [0, n_tokens), non-decreasing
 *     uint32_t pair_ref[n_pairs]           index into rows[]
 *     float    pair_weight[n_pairs]
 *     uint8_t  pair_group[n_pairs]         only with US_WIRE_F_GROUPS; in [0, n_groups)
 *     padding to a multiple of 8
 *   Modes:
 *     US_WIRE_PUSH  the shard answers per token t, per IVE group g:
 *                   sum over pairs p of token t (and group g) of
 *                   pair_weight[p] * V[rows[pair_ref[p]]] over its columns
 *     US_WIRE_ROWS  the shard answers the raw stored rows (pull over messages);
 *                   n_pairs must be 0
 *     US_WIRE_NOP   no data (a round in which this shard has nothing to do, or
 *                   a pull round served by one-sided reads); n_rows = n_pairs = 0
 *   Flag US_WIRE_F_STOP: the coordinator has finished; the shard stops serving
 *   once every coordinator has sent it.
 *
 * Response (shard -> coordinator), total_bytes long:
 *     us_wire_resp_hdr                     48 bytes
 *     status == US_OK:
 *       PUSH: float sums[n_tokens][n_groups][dim]   (dim = the shard's columns)
 *       ROWS: for int8 tables float scales[n_rows] first (keeps them aligned),
 *             then uint8_t rows[n_rows][dim * dtype size], padded to 8
 *       NOP:  nothing
 *     status < 0 (a US_E* code): char message[total_bytes - 48], not
 *       NUL-terminated; the request was rejected whole and nothing was summed.
 *   Flag US_WIRE_F_ALL_STOPPED: every coordinator has sent STOP to this shard.
 *
 * Parsing functions validate everything (sizes with overflow checks, counts,
 * ordering, index ranges, known modes and flags) before returning pointers
 * into the buffer; the pointers live as long as the buffer. Row ranges
 * against a table are checked by the server (shard/serve.h), which knows it.
 */
#ifndef US_WIRE_H
#define US_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define US_WIRE_REQ_MAGIC  0x31525355u   /* "USR1" read as little-endian bytes */
#define US_WIRE_RESP_MAGIC 0x31415355u   /* "USA1" */
#define US_WIRE_VERSION    1
#define US_WIRE_MAX_GROUPS 256

enum us_wire_mode {
    US_WIRE_NOP  = 0,
    US_WIRE_PUSH = 1,
    US_WIRE_ROWS = 2,
};

enum us_wire_flags {
    US_WIRE_F_GROUPS      = 1u << 0,  /* request carries pair_group[] */
    US_WIRE_F_STOP        = 1u << 1,  /* request: coordinator is done */
    US_WIRE_F_ALL_STOPPED = 1u << 2,  /* response: all coordinators are done */
};
#define US_WIRE_REQ_FLAGS  (US_WIRE_F_GROUPS | US_WIRE_F_STOP)
#define US_WIRE_RESP_FLAGS (US_WIRE_F_ALL_STOPPED)

typedef struct us_wire_req_hdr {
    uint32_t magic;
    uint16_t version;
    uint8_t  mode;
    uint8_t  flags;
    uint32_t table_id;
    uint32_t n_tokens;
    uint32_t n_rows;
    uint32_t n_pairs;
    uint32_t n_groups;     /* >= 1 */
    uint32_t reserved;     /* 0 */
    uint64_t batch_id;
    uint64_t total_bytes;
} us_wire_req_hdr;

typedef struct us_wire_resp_hdr {
    uint32_t magic;
    uint16_t version;
    uint8_t  mode;
    uint8_t  flags;
    int32_t  status;       /* US_OK or a negative US_E* code */
    uint32_t table_id;
    uint32_t n_tokens;
    uint32_t n_groups;
    uint32_t dim;          /* columns per summed/stored row in the payload */
    uint32_t n_rows;
    uint64_t batch_id;
    uint64_t total_bytes;
} us_wire_resp_hdr;

_Static_assert(sizeof(us_wire_req_hdr) == 48, "request header is 48 bytes on the wire");
_Static_assert(sizeof(us_wire_resp_hdr) == 48, "response header is 48 bytes on the wire");

/* A parsed request: pointers into the message buffer. */
typedef struct us_wire_req {
    const us_wire_req_hdr *hdr;
    const uint64_t *rows;
    const uint32_t *pair_token;
    const uint32_t *pair_ref;
    const float    *pair_weight;
    const uint8_t  *pair_group;   /* NULL without US_WIRE_F_GROUPS */
} us_wire_req;

/* A parsed response: payload pointers into the message buffer. */
typedef struct us_wire_resp {
    const us_wire_resp_hdr *hdr;
    const float   *sums;          /* PUSH */
    const uint8_t *row_bytes;     /* ROWS */
    const float   *row_scales;    /* ROWS of an int8 table, else NULL */
    const char    *message;       /* status < 0: error text (not NUL-terminated) */
    size_t         message_len;
} us_wire_resp;

/* Limits a receiver enforces on top of self-consistency. */
typedef struct us_wire_limits {
    uint64_t max_bytes;       /* largest message accepted */
    uint32_t max_tokens;
    uint32_t max_pairs;
} us_wire_limits;

/* Returns: n rounded up to a multiple of 8. */
static inline uint64_t us_wire_pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* Bytes of a request with these counts.
 * Returns: the byte count (it cannot overflow: all counts are u32). */
uint64_t us_wire_req_bytes(uint32_t n_rows, uint32_t n_pairs, int with_groups);

/* Bytes of a response payload + header: PUSH sums, ROWS rows(+scales).
 * Returns: the byte count, or 0 when the counts overflow 64 bits. */
uint64_t us_wire_resp_push_bytes(uint32_t n_tokens, uint32_t n_groups, uint32_t dim);
uint64_t us_wire_resp_rows_bytes(uint32_t n_rows, uint32_t dim, size_t elem_bytes,
                                 int with_scales);

/* What a request carries: the header fields a sender chooses. Named fields
 * because eight same-typed counts and ids were swapped silently as
 * positional arguments. */
typedef struct us_wire_req_desc {
    uint8_t  mode;        /* enum us_wire_mode */
    uint8_t  flags;       /* US_WIRE_REQ_FLAGS bits */
    uint32_t table_id;
    uint64_t batch_id;
    uint32_t n_tokens;
    uint32_t n_rows;
    uint32_t n_pairs;
    uint32_t n_groups;    /* >= 1 */
} us_wire_req_desc;

/* Lays out a request described by *d in buf (at least us_wire_req_bytes()
 * long, 8-aligned): writes the header and returns pointers to the arrays for
 * the caller to fill. Padding bytes are zeroed.
 * Returns: US_OK; US_EINVAL for a bad mode or flags, n_groups outside
 * [1, 256], or a buffer too small or misaligned (buf unchanged). */
int us_wire_req_init(void *buf, uint64_t buf_bytes, const us_wire_req_desc *d,
                     us_wire_req *out, us_err *err);

/* Validates a received request fully and fills *out. Checks: length vs header
 * vs counts, magic, version, mode, flags, reserved, limits, n_groups in
 * [1, 256], pair_token < n_tokens and non-decreasing, pair_ref < n_rows,
 * pair_group < n_groups, weights finite, NOP/ROWS without pairs.
 * Returns: US_OK; US_EPROTO for a malformed message, US_EVERSION for another
 * wire version, US_ERANGE beyond *lim, each with a message naming the field. */
int us_wire_req_parse(const void *buf, uint64_t len, const us_wire_limits *lim,
                      us_wire_req *out, us_err *err);

/* What a response header says; counts that a mode does not use are 0. */
typedef struct us_wire_resp_desc {
    uint8_t  mode;
    uint8_t  flags;       /* US_WIRE_RESP_FLAGS bits */
    uint32_t table_id;
    uint64_t batch_id;
    uint32_t n_tokens;    /* PUSH */
    uint32_t n_groups;    /* PUSH */
    uint32_t dim;         /* PUSH and ROWS */
    uint32_t n_rows;      /* ROWS */
    uint64_t total_bytes;
} us_wire_resp_desc;

/* Writes a response header (status OK) for a payload laid out by the caller.
 * Returns: nothing; it cannot fail. */
void us_wire_resp_init(void *buf, const us_wire_resp_desc *d);

/* Encodes an error response to the request d->{mode, table_id, batch_id}
 * with d->flags into a freshly malloc'd buffer (*out, *out_len); the counts
 * and total_bytes of d are ignored (an error carries only its message).
 * Returns: US_OK, or US_ENOMEM (*out unchanged). */
int us_wire_resp_error(void **out, uint64_t *out_len, const us_wire_resp_desc *d,
                       const us_err *cause);

/* What the receiver of a response expects besides the request it sent. */
typedef struct us_wire_resp_expect {
    const us_wire_req_hdr *asked;   /* the request this answers */
    uint32_t dim;                   /* columns this shard holds */
    size_t   elem_bytes;            /* stored element size (ROWS) */
    int      with_scales;           /* int8 table: ROWS carry scales (ROWS) */
} us_wire_resp_expect;

/* Validates a received response: magic, version, flags, length vs counts for
 * its mode, and (unless the status is an error) that it answers what was
 * asked: same mode, table, batch, tokens, groups, rows and the expected dim.
 * An error response is returned as US_OK with out->hdr->status < 0 and
 * out->message set.
 * Returns: US_OK; US_EPROTO naming the field for anything malformed or not
 * answering the request; US_EVERSION for another wire version. */
int us_wire_resp_parse(const void *buf, uint64_t len, const us_wire_resp_expect *want,
                       us_wire_resp *out, us_err *err);

/* A growable byte buffer that messages are appended to, each starting
 * 8-aligned (the send side of an exchange). Owns its memory. */
typedef struct us_wire_buf {
    uint8_t *data;
    uint64_t len, cap;
} us_wire_buf;

/* Appends `bytes` uninitialised bytes at the next 8-aligned offset; *at gets
 * that offset. The data pointer may move: recompute pointers from offsets.
 * Returns: US_OK, or US_ENOMEM (buffer unchanged). */
int us_wire_buf_append(us_wire_buf *b, uint64_t bytes, uint64_t *at, us_err *err);
/* Frees the buffer's memory and empties it. Returns: nothing. */
void us_wire_buf_free(us_wire_buf *b);

#endif
