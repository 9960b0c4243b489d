/*
 * client_frame.h — frames of the client API (`ultrashard serve`, proto/us_client.h):
 * length prefix, incremental reading, packing and validation of the Request
 * and Response messages declared in ultrashard.proto (read the "Client API"
 * comment there for the protocol's rules).
 *
 * A frame is a u32 little-endian payload length N followed by N bytes of a
 * packed message. N is checked against the reader's max_bytes as soon as the
 * four header bytes are in, before anything is allocated; N == 0 is refused
 * too (a Request always has a version and an id). The reader is incremental
 * so a non-blocking server can feed it whatever recv() returned; it stops at
 * the end of one frame so the caller decides when to take the next.
 *
 * Validation is in two steps: us_frame_unpack_request decodes (malformed
 * bytes -> BAD_REQUEST) and us_request_check checks everything that needs no
 * knowledge of the tables: version, id, a body is set, array lengths agree
 * with the stated shapes, group ids < n_groups, numbers finite, the server's
 * limits. The server then checks table names, dims and row ranges itself.
 * Status values are those of ultrashard.proto's Status enum
 * (ULTRASHARD__STATUS__STATUS_*).
 */
#ifndef US_CLIENT_FRAME_H
#define US_CLIENT_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"
#include "proto/ultrashard.pb-c.h"

#define US_CLIENT_PROTOCOL_VERSION 1u
#define US_FRAME_HEADER_BYTES      4u
#define US_FRAME_DEFAULT_MAX_BYTES (64u << 20)   /* server and client default */
#define US_FRAME_MIN_MAX_BYTES     1024u         /* smallest max a reader accepts */
#define US_LOOKUP_MAX_GROUPS       256u          /* = the gather kernel's limit */
#define US_GENERATE_ID_MAX         256u          /* = infer's US_PROMPT_ID_MAX */

/* Incremental reader of one connection's frames. */
typedef struct us_frame_reader {
    uint32_t max_bytes;              /* largest payload accepted */
    uint8_t  header[US_FRAME_HEADER_BYTES];
    uint32_t header_have;            /* header bytes received */
    uint8_t *payload;                /* [length], allocated once the header is in */
    uint32_t length, have;           /* payload length and bytes received */
    bool     complete;               /* a whole frame waits for us_frame_reader_take */
} us_frame_reader;

/* Starts an empty reader (max_bytes 0 = US_FRAME_DEFAULT_MAX_BYTES).
 * Returns: nothing; cannot fail. */
void us_frame_reader_init(us_frame_reader *r, uint32_t max_bytes);

/* Feeds up to n bytes; consumes only up to the end of the current frame.
 * *used = bytes consumed; *done = a whole frame is ready (take it before
 * feeding more: a reader holding a complete frame consumes nothing).
 * Returns: US_OK; US_ERANGE when the announced length exceeds max_bytes
 * (nothing allocated; the message gives both numbers); US_EPROTO for a zero
 * length; US_ENOMEM. After an error the reader is unusable (close the
 * connection); us_frame_reader_free still works. */
int us_frame_reader_feed(us_frame_reader *r, const uint8_t *data, size_t n, size_t *used,
                         bool *done, us_err *err);

/* Returns: true when part of a frame has been received but not all of it
 * (the server's slow-frame deadline runs while this holds). */
bool us_frame_reader_partial(const us_frame_reader *r);

/* Hands over the completed frame's payload (caller frees it with free())
 * and resets the reader for the next frame.
 * Returns: the payload, *len its length; NULL when no frame is complete. */
uint8_t *us_frame_reader_take(us_frame_reader *r, uint32_t *len);

/* Returns: nothing; frees a partial payload (r may be reused after init). */
void us_frame_reader_free(us_frame_reader *r);

/* Packs m into one malloc'd buffer: header + payload (*out, *len bytes).
 * Returns: US_OK; US_ERANGE when the payload exceeds max_bytes (0 = default);
 * US_ENOMEM. *out is NULL on error. */
int us_frame_pack_request(const Ultrashard__Request *m, uint32_t max_bytes, uint8_t **out,
                          size_t *len, us_err *err);

/* Returns: as us_frame_pack_request. */
int us_frame_pack_response(const Ultrashard__Response *m, uint32_t max_bytes, uint8_t **out,
                           size_t *len, us_err *err);

/* Decodes a payload (without its header).
 * Returns: US_OK with *out set (free with ultrashard__request__free_unpacked(*out,
 * NULL)); US_EPROTO for bytes that are not a Request. */
int us_frame_unpack_request(const uint8_t *payload, size_t n, Ultrashard__Request **out,
                            us_err *err);

/* Decodes a payload and checks it is a well-formed Response: version 1,
 * a known status, body arrays whose lengths match their shapes.
 * Returns: US_OK with *out set (free with ultrashard__response__free_unpacked);
 * US_EPROTO for malformed bytes or shapes; US_EVERSION for a newer version. */
int us_frame_unpack_response(const uint8_t *payload, size_t n, Ultrashard__Response **out,
                             us_err *err);

/* The server's per-request limits (0 = no limit for that field). */
typedef struct us_request_limits {
    uint32_t max_request_tokens;   /* Lookup/Memory n_tokens; Generate prompt + max_tokens */
    uint32_t max_lookup_pairs;     /* Lookup n_tokens * k */
    uint32_t max_dim;              /* Memory dim */
} us_request_limits;

/* Checks a decoded request's shape and limits (see the file comment).
 * Returns: STATUS_OK (0); else the status to answer (BAD_REQUEST,
 * UNSUPPORTED_VERSION, TOO_LARGE, OUT_OF_RANGE for a group id >= n_groups)
 * with *err naming the field. Auth bodies pass (the server checks tokens). */
int us_request_check(const Ultrashard__Request *r, const us_request_limits *lim, us_err *err);

/* Returns: true for kinds a client may resend after a reconnect (Lookup,
 * Memory, Stats, Health); Generate is resent only by a caller that knows
 * nothing of it was streamed. */
bool us_request_idempotent(const Ultrashard__Request *r);

/* Returns: the static name of a status ("OK", "BUSY", ...), "?" if unknown. */
const char *us_status_name(int status);

/* Returns: the static name of a request body ("lookup", ...; "none"). */
const char *us_request_kind_name(int body_case);

/* Maps a server status to the library's error code (for blocking calls):
 * OK -> US_OK, BAD_REQUEST/UNAUTHENTICATED -> US_EINVAL, BUSY/SHUTTING_DOWN/
 * TIMEOUT -> US_EIO, TOO_LARGE/OUT_OF_RANGE -> US_ERANGE, NOT_FOUND ->
 * US_ENOTFOUND, UNSUPPORTED_VERSION -> US_EVERSION, others -> US_EPROTO.
 * Returns: the code. */
int us_status_to_code(int status);

#endif
