/*
 * control.h — the control messages of a distributed model job, as declared
 * in ultrashard.proto (ControlMessage, ControlReply).
 *
 * coordinator/model/memory_dist.h opens every cycle with a control exchange:
 * each coordinator contributes one message (CYCLE, SESSION_SAVE, SESSION_LOAD,
 * IDLE or STOP) and every rank receives all of them; session states move
 * point to point between the asking coordinator and the owner shard, which
 * answers with a reply. A collective needs known counts, so a message travels
 * in a frame of US_CONTROL_FRAME_BYTES: u32 little-endian length, the
 * protobuf bytes, zero padding. A reply is sent at its own length (at most
 * US_CONTROL_REPLY_MAX_BYTES; the receiver posts that many).
 *
 * Decoders validate everything before filling the C struct: malformed or
 * truncated bytes, an oversize length, a version other than
 * US_CONTROL_VERSION, an unknown kind or error code, a field longer than its
 * C buffer. Unknown fields are tolerated (fields are only ever added).
 */
#ifndef US_CONTROL_H
#define US_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define US_CONTROL_VERSION         1
#define US_CONTROL_FRAME_BYTES     256    /* broadcast frame, length prefix included */
#define US_CONTROL_REPLY_MAX_BYTES 1024
#define US_CONTROL_ID_MAX          128    /* = US_SESSION_ID_MAX (shard/session.h) */
#define US_CONTROL_NOTE_BYTES      256

typedef enum us_control_kind {
    US_CONTROL_CYCLE        = 1,   /* a forward pass follows: one round per table */
    US_CONTROL_SESSION_SAVE = 2,   /* state_bytes of a session state follow, to owner */
    US_CONTROL_SESSION_LOAD = 3,   /* owner answers with the session's state */
    US_CONTROL_STOP         = 4,   /* done; once every coordinator is, STOP rounds follow */
    US_CONTROL_IDLE         = 5,   /* nothing this cycle from this coordinator; more later */
} us_control_kind;

typedef struct us_control_msg {
    us_control_kind kind;
    int32_t  owner;                          /* session operations: owner shard index */
    uint64_t state_bytes;                    /* SESSION_SAVE: packed state that follows */
    char     session_id[US_CONTROL_ID_MAX + 1];
} us_control_msg;

typedef struct us_control_reply {
    int32_t  code;                           /* US_OK or the operation's US_E* code */
    uint64_t generation;                     /* SESSION_SAVE: the generation written */
    uint64_t state_bytes;                    /* SESSION_LOAD: packed state that follows */
    char     note[US_CONTROL_NOTE_BYTES];    /* SESSION_LOAD: damaged generation skipped */
    char     msg[US_ERR_MSG_BYTES];          /* code != US_OK: the owner's message */
} us_control_reply;

/* Returns: the name of a kind ("CYCLE", ...), "?" for others (static). */
const char *us_control_kind_name(int kind);

/* Encodes m into frame[US_CONTROL_FRAME_BYTES].
 * Returns: US_OK; US_EINVAL for an unknown kind, a session operation
 * without a session id or owner, or a session id longer than
 * US_CONTROL_ID_MAX; frame is unchanged then. */
int us_control_encode(const us_control_msg *m, uint8_t *frame, us_err *err);

/* Decodes a frame of frame_bytes (>= 4) into *m.
 * Returns: US_OK; US_EPROTO for a length beyond the frame, malformed
 * protobuf, an unknown kind, a missing or over-long session id;
 * US_EVERSION for a version other than US_CONTROL_VERSION. *m is unchanged
 * on error. */
int us_control_decode(const uint8_t *frame, size_t frame_bytes, us_control_msg *m,
                      us_err *err);

/* Encodes r into buf (cap bytes, >= US_CONTROL_REPLY_MAX_BYTES suffices);
 * *len receives the length.
 * Returns: US_OK; US_EINVAL for a code that is not US_OK or a US_E* code;
 * US_ERANGE when the encoding does not fit in cap. */
int us_control_reply_encode(const us_control_reply *r, uint8_t *buf, size_t cap, size_t *len,
                            us_err *err);

/* Decodes len bytes into *r.
 * Returns: US_OK; US_EPROTO for malformed or over-long (> US_CONTROL_REPLY_
 * MAX_BYTES) bytes, an unknown error code or an over-long note or message;
 * US_EVERSION for a version other than US_CONTROL_VERSION (the reply's or
 * its error's). *r is unchanged on error. */
int us_control_reply_decode(const uint8_t *buf, size_t len, us_control_reply *r, us_err *err);

#endif
