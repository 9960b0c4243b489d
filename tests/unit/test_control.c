/* test_control.c — control messages (proto/control.h): every kind and the
 * reply round-trip; wrong versions, unknown kinds and codes, oversize,
 * truncated and garbage bytes are refused with the right code. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proto/control.h"
#include "proto/ultrashard.pb-c.h"

static void test_message_roundtrip_each_kind(void **state)
{
    (void)state;
    static const us_control_kind kinds[] = { US_CONTROL_CYCLE, US_CONTROL_SESSION_SAVE,
                                             US_CONTROL_SESSION_LOAD, US_CONTROL_STOP,
                                             US_CONTROL_IDLE };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        us_control_msg m = { .kind = kinds[i] }, got;
        bool session = kinds[i] == US_CONTROL_SESSION_SAVE ||
                       kinds[i] == US_CONTROL_SESSION_LOAD;
        if (session) {
            m.owner = 2;
            m.state_bytes = kinds[i] == US_CONTROL_SESSION_SAVE ? (1ull << 33) + 5 : 0;
            snprintf(m.session_id, sizeof m.session_id, "chat-%zu.x_y", i);
        }
        uint8_t frame[US_CONTROL_FRAME_BYTES];
        us_err e = {0};
        assert_int_equal(us_control_encode(&m, frame, &e), US_OK);
        memset(&got, 0x5a, sizeof got);
        assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_OK);
        assert_int_equal(got.kind, kinds[i]);
        assert_int_equal(got.owner, session ? 2 : 0);
        assert_true(got.state_bytes == m.state_bytes);
        assert_string_equal(got.session_id, m.session_id);
    }
    /* the longest session id fits the frame */
    us_control_msg m = { .kind = US_CONTROL_SESSION_LOAD, .owner = 7 }, got;
    memset(m.session_id, 'a', US_CONTROL_ID_MAX);
    uint8_t frame[US_CONTROL_FRAME_BYTES];
    assert_int_equal(us_control_encode(&m, frame, NULL), US_OK);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, NULL), US_OK);
    assert_int_equal(strlen(got.session_id), US_CONTROL_ID_MAX);
    assert_int_equal(got.owner, 7);
}

static void test_message_encode_refuses(void **state)
{
    (void)state;
    uint8_t frame[US_CONTROL_FRAME_BYTES];
    us_err e = {0};
    us_control_msg m = { .kind = (us_control_kind)9 };
    assert_int_equal(us_control_encode(&m, frame, &e), US_EINVAL);
    assert_non_null(strstr(e.msg, "unknown kind 9"));
    m = (us_control_msg){ .kind = US_CONTROL_SESSION_SAVE, .owner = 1 };   /* no id */
    assert_int_equal(us_control_encode(&m, frame, &e), US_EINVAL);
    assert_non_null(strstr(e.msg, "SESSION_SAVE"));
}

/* A frame holding an arbitrary ControlMessage (built here, not by the encoder). */
static void frame_of(const Ultrashard__ControlMessage *pb, uint8_t *frame)
{
    memset(frame, 0, US_CONTROL_FRAME_BYTES);
    size_t n = ultrashard__control_message__pack(pb, frame + 4);
    frame[0] = (uint8_t)n;
}

static void test_message_decode_refuses(void **state)
{
    (void)state;
    uint8_t frame[US_CONTROL_FRAME_BYTES];
    us_control_msg got = { .kind = US_CONTROL_STOP, .owner = 3 };
    us_err e = {0};
    Ultrashard__ControlMessage pb = ULTRASHARD__CONTROL_MESSAGE__INIT;
    pb.version = US_CONTROL_VERSION + 1;
    pb.kind = ULTRASHARD__CONTROL_KIND__CONTROL_CYCLE;
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EVERSION);
    assert_non_null(strstr(e.msg, "version 2, this build speaks 1"));
    pb.version = 0;   /* no version at all */
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EVERSION);
    pb.version = US_CONTROL_VERSION;
    pb.kind = (Ultrashard__ControlKind)17;
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "unknown kind 17"));
    pb.kind = ULTRASHARD__CONTROL_KIND__CONTROL_NONE;
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EPROTO);
    pb.kind = ULTRASHARD__CONTROL_KIND__CONTROL_SESSION_LOAD;   /* without an id */
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EPROTO);
    char long_id[US_CONTROL_ID_MAX + 2];
    memset(long_id, 'b', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    pb.session_id = long_id;
    frame_of(&pb, frame);
    assert_int_equal(us_control_decode(frame, sizeof frame, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "session id of 129 bytes"));

    /* oversize length, truncated and garbage bytes */
    us_control_msg m = { .kind = US_CONTROL_SESSION_SAVE, .owner = 1, .state_bytes = 99 };
    snprintf(m.session_id, sizeof m.session_id, "s1");
    assert_int_equal(us_control_encode(&m, frame, NULL), US_OK);
    uint8_t bad[US_CONTROL_FRAME_BYTES];
    memcpy(bad, frame, sizeof bad);
    bad[1] = 0x10;   /* length 4096 + n: beyond the frame */
    assert_int_equal(us_control_decode(bad, sizeof bad, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "exceeds"));
    assert_int_equal(us_control_decode(frame, 3, &got, &e), US_EPROTO);
    memcpy(bad, frame, sizeof bad);
    bad[0] = (uint8_t)(bad[0] - 3);   /* the id string cut short */
    assert_int_equal(us_control_decode(bad, sizeof bad, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "malformed"));
    memset(bad + 4, 0xff, sizeof bad - 4);
    bad[0] = 40;
    bad[1] = 0;
    assert_int_equal(us_control_decode(bad, sizeof bad, &got, &e), US_EPROTO);
    /* nothing was written on any refusal */
    assert_int_equal(got.kind, US_CONTROL_STOP);
    assert_int_equal(got.owner, 3);
}

static void test_reply_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[US_CONTROL_REPLY_MAX_BYTES];
    size_t len = 0;
    us_control_reply ok = { .code = US_OK, .generation = 12, .state_bytes = 4096 }, got;
    snprintf(ok.note, sizeof ok.note, "generation 13 damaged, loaded 12");
    assert_int_equal(us_control_reply_encode(&ok, buf, sizeof buf, &len, NULL), US_OK);
    assert_int_equal(us_control_reply_decode(buf, len, &got, NULL), US_OK);
    assert_int_equal(got.code, US_OK);
    assert_true(got.generation == 12 && got.state_bytes == 4096);
    assert_string_equal(got.note, ok.note);
    assert_string_equal(got.msg, "");
    /* an error reply with the longest message and note */
    us_control_reply bad = { .code = US_ENOTFOUND };
    memset(bad.msg, 'm', sizeof bad.msg - 1);
    memset(bad.note, 'n', sizeof bad.note - 1);
    assert_int_equal(us_control_reply_encode(&bad, buf, sizeof buf, &len, NULL), US_OK);
    assert_true(len <= US_CONTROL_REPLY_MAX_BYTES);
    assert_int_equal(us_control_reply_decode(buf, len, &got, NULL), US_OK);
    assert_int_equal(got.code, US_ENOTFOUND);
    assert_int_equal(strlen(got.msg), US_ERR_MSG_BYTES - 1);
    assert_int_equal(strlen(got.note), US_CONTROL_NOTE_BYTES - 1);
    us_err e = {0};
    assert_int_equal(us_control_reply_encode(&bad, buf, 16, &len, &e), US_ERANGE);
    bad.code = 5;
    assert_int_equal(us_control_reply_encode(&bad, buf, sizeof buf, &len, &e), US_EINVAL);
}

static void test_reply_decode_refuses(void **state)
{
    (void)state;
    uint8_t buf[2 * US_CONTROL_REPLY_MAX_BYTES];
    us_control_reply got = { .code = US_EIO, .generation = 77 };
    us_err e = {0};
    Ultrashard__ControlReply pb = ULTRASHARD__CONTROL_REPLY__INIT;
    Ultrashard__Error er = ULTRASHARD__ERROR__INIT;
    pb.version = 3;
    size_t n = ultrashard__control_reply__pack(&pb, buf);
    assert_int_equal(us_control_reply_decode(buf, n, &got, &e), US_EVERSION);
    pb.version = US_CONTROL_VERSION;
    pb.error = &er;
    er.version = US_CONTROL_VERSION;
    er.code = (Ultrashard__ErrorCode)20;   /* a client-API code no rank answers with */
    er.message = "x";
    n = ultrashard__control_reply__pack(&pb, buf);
    assert_int_equal(us_control_reply_decode(buf, n, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "unknown error code 20"));
    er.code = ULTRASHARD__ERROR_CODE__ERROR_IO;
    er.version = 0;
    n = ultrashard__control_reply__pack(&pb, buf);
    assert_int_equal(us_control_reply_decode(buf, n, &got, &e), US_EVERSION);
    er.version = US_CONTROL_VERSION;
    char long_msg[US_ERR_MSG_BYTES + 1];
    memset(long_msg, 'z', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = 0;
    er.message = long_msg;
    n = ultrashard__control_reply__pack(&pb, buf);
    assert_int_equal(us_control_reply_decode(buf, n, &got, &e), US_EPROTO);
    assert_non_null(strstr(e.msg, "message of 512 bytes"));
    er.message = "shard 1: no such session";
    n = ultrashard__control_reply__pack(&pb, buf);
    assert_int_equal(us_control_reply_decode(buf, n - 4, &got, &e), US_EPROTO);   /* truncated */
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(us_control_reply_decode(buf, 64, &got, &e), US_EPROTO);        /* garbage */
    assert_int_equal(us_control_reply_decode(buf, sizeof buf, &got, &e), US_EPROTO); /* oversize */
    assert_non_null(strstr(e.msg, "limit 1024"));
    assert_int_equal(got.code, US_EIO);
    assert_true(got.generation == 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_roundtrip_each_kind),
        cmocka_unit_test(test_message_encode_refuses),
        cmocka_unit_test(test_message_decode_refuses),
        cmocka_unit_test(test_reply_roundtrip),
        cmocka_unit_test(test_reply_decode_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
