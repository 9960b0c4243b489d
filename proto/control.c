/* control.c — control messages of a distributed model job (see control.h). */
#include "proto/control.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proto/ultrashard.pb-c.h"

const char *us_control_kind_name(int kind)
{
    switch (kind) {
    case US_CONTROL_CYCLE:        return "CYCLE";
    case US_CONTROL_SESSION_SAVE: return "SESSION_SAVE";
    case US_CONTROL_SESSION_LOAD: return "SESSION_LOAD";
    case US_CONTROL_STOP:         return "STOP";
    case US_CONTROL_IDLE:         return "IDLE";
    default:                      return "?";
    }
}

static bool is_session_op(int kind)
{
    return kind == US_CONTROL_SESSION_SAVE || kind == US_CONTROL_SESSION_LOAD;
}

int us_control_encode(const us_control_msg *m, uint8_t *frame, us_err *err)
{
    if (us_control_kind_name((int)m->kind)[0] == '?')
        return us_err_set(err, US_EINVAL, "control message: unknown kind %d", (int)m->kind);
    size_t id_len = strnlen(m->session_id, sizeof m->session_id);
    if (id_len > US_CONTROL_ID_MAX)
        return us_err_set(err, US_EINVAL, "control message %s: session id longer than %d",
                          us_control_kind_name((int)m->kind), US_CONTROL_ID_MAX);
    if (is_session_op((int)m->kind) && (id_len == 0 || m->owner < 0))
        return us_err_set(err, US_EINVAL, "control message %s: needs a session id and an "
                          "owner shard (got '%s', %d)", us_control_kind_name((int)m->kind),
                          m->session_id, (int)m->owner);
    Ultrashard__ControlMessage pb = ULTRASHARD__CONTROL_MESSAGE__INIT;
    pb.version = US_CONTROL_VERSION;
    pb.kind = (Ultrashard__ControlKind)m->kind;
    pb.owner_shard = m->owner > 0 ? (uint32_t)m->owner : 0;
    pb.state_bytes = m->state_bytes;
    pb.session_id = (char *)m->session_id;
    size_t n = ultrashard__control_message__get_packed_size(&pb);
    if (n > US_CONTROL_FRAME_BYTES - 4)   /* cannot happen with the limits above */
        return us_err_set(err, US_EINVAL, "control message %s: %zu bytes exceed the frame",
                          us_control_kind_name((int)m->kind), n);
    memset(frame, 0, US_CONTROL_FRAME_BYTES);
    for (int i = 0; i < 4; i++)
        frame[i] = (uint8_t)(n >> (8 * i));
    ultrashard__control_message__pack(&pb, frame + 4);
    return US_OK;
}

static int check_message(const Ultrashard__ControlMessage *pb, us_err *err)
{
    if (pb->version != US_CONTROL_VERSION)
        return us_err_set(err, US_EVERSION, "control message: version %u, this build speaks %d",
                          pb->version, US_CONTROL_VERSION);
    int kind = (int)pb->kind;
    if (us_control_kind_name(kind)[0] == '?')
        return us_err_set(err, US_EPROTO, "control message: unknown kind %d", kind);
    size_t id_len = strlen(pb->session_id);
    if (id_len > US_CONTROL_ID_MAX)
        return us_err_set(err, US_EPROTO, "control message %s: session id of %zu bytes "
                          "(limit %d)", us_control_kind_name(kind), id_len, US_CONTROL_ID_MAX);
    if (is_session_op(kind) && (id_len == 0 || pb->owner_shard > INT32_MAX))
        return us_err_set(err, US_EPROTO, "control message %s: no session id or bad owner "
                          "shard %u", us_control_kind_name(kind), pb->owner_shard);
    return US_OK;
}

int us_control_decode(const uint8_t *frame, size_t frame_bytes, us_control_msg *m,
                      us_err *err)
{
    if (frame_bytes < 4)
        return us_err_set(err, US_EPROTO, "control frame: %zu bytes, no length", frame_bytes);
    uint32_t n = (uint32_t)frame[0] | (uint32_t)frame[1] << 8 | (uint32_t)frame[2] << 16 |
                 (uint32_t)frame[3] << 24;
    if (n > frame_bytes - 4)
        return us_err_set(err, US_EPROTO, "control frame: length %u exceeds the %zu bytes "
                          "after it", n, frame_bytes - 4);
    Ultrashard__ControlMessage *pb = ultrashard__control_message__unpack(NULL, n, frame + 4);
    if (pb == NULL)
        return us_err_set(err, US_EPROTO, "control message: malformed (%u bytes)", n);
    int rc = check_message(pb, err);
    if (rc == US_OK) {
        memset(m, 0, sizeof *m);
        m->kind = (us_control_kind)pb->kind;
        m->owner = (int32_t)pb->owner_shard;
        m->state_bytes = pb->state_bytes;
        memcpy(m->session_id, pb->session_id, strlen(pb->session_id) + 1);
    }
    ultrashard__control_message__free_unpacked(pb, NULL);
    return rc;
}

int us_control_reply_encode(const us_control_reply *r, uint8_t *buf, size_t cap, size_t *len,
                            us_err *err)
{
    if (r->code > 0 || r->code < US_EUNSUPP)
        return us_err_set(err, US_EINVAL, "control reply: %d is not a US_E* code", r->code);
    Ultrashard__ControlReply pb = ULTRASHARD__CONTROL_REPLY__INIT;
    Ultrashard__Error e = ULTRASHARD__ERROR__INIT;
    char note[US_CONTROL_NOTE_BYTES], msg[US_ERR_MSG_BYTES];
    snprintf(note, sizeof note, "%s", r->note);   /* NUL-terminated whatever came in */
    snprintf(msg, sizeof msg, "%s", r->msg);
    pb.version = US_CONTROL_VERSION;
    pb.generation = r->generation;
    pb.state_bytes = r->state_bytes;
    pb.note = note;
    if (r->code != US_OK) {
        e.version = US_CONTROL_VERSION;
        e.code = (Ultrashard__ErrorCode)(-r->code);
        e.message = msg;
        pb.error = &e;
    }
    size_t n = ultrashard__control_reply__get_packed_size(&pb);
    if (n > cap)
        return us_err_set(err, US_ERANGE, "control reply: %zu bytes, buffer holds %zu", n, cap);
    *len = ultrashard__control_reply__pack(&pb, buf);
    return US_OK;
}

static int check_reply(const Ultrashard__ControlReply *pb, us_err *err)
{
    if (pb->version != US_CONTROL_VERSION)
        return us_err_set(err, US_EVERSION, "control reply: version %u, this build speaks %d",
                          pb->version, US_CONTROL_VERSION);
    if (strlen(pb->note) >= US_CONTROL_NOTE_BYTES)
        return us_err_set(err, US_EPROTO, "control reply: note of %zu bytes (limit %d)",
                          strlen(pb->note), US_CONTROL_NOTE_BYTES - 1);
    const Ultrashard__Error *e = pb->error;
    if (e == NULL)
        return US_OK;
    if (e->version != US_CONTROL_VERSION)
        return us_err_set(err, US_EVERSION, "control reply: error version %u, this build "
                          "speaks %d", e->version, US_CONTROL_VERSION);
    if ((int)e->code < 0 || (int)e->code > -US_EUNSUPP)
        return us_err_set(err, US_EPROTO, "control reply: unknown error code %d", (int)e->code);
    if (strlen(e->message) >= US_ERR_MSG_BYTES)
        return us_err_set(err, US_EPROTO, "control reply: message of %zu bytes (limit %d)",
                          strlen(e->message), US_ERR_MSG_BYTES - 1);
    return US_OK;
}

int us_control_reply_decode(const uint8_t *buf, size_t len, us_control_reply *r, us_err *err)
{
    if (len > US_CONTROL_REPLY_MAX_BYTES)
        return us_err_set(err, US_EPROTO, "control reply: %zu bytes (limit %d)", len,
                          US_CONTROL_REPLY_MAX_BYTES);
    Ultrashard__ControlReply *pb = ultrashard__control_reply__unpack(NULL, len, buf);
    if (pb == NULL)
        return us_err_set(err, US_EPROTO, "control reply: malformed (%zu bytes)", len);
    int rc = check_reply(pb, err);
    if (rc == US_OK) {
        memset(r, 0, sizeof *r);
        r->generation = pb->generation;
        r->state_bytes = pb->state_bytes;
        memcpy(r->note, pb->note, strlen(pb->note) + 1);
        if (pb->error != NULL) {
            r->code = -(int32_t)pb->error->code;
            memcpy(r->msg, pb->error->message, strlen(pb->error->message) + 1);
        }
    }
    ultrashard__control_reply__free_unpacked(pb, NULL);
    return rc;
}
