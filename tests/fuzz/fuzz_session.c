/*
 * fuzz_session.c — libFuzzer harness: session state files through
 * us_session_unpack (shard/session.h), the parser us_session_load runs on
 * each gen-*.pb file.
 *
 * Each input is tried twice: as it is, and (when it decodes as a
 * SessionState protobuf at all) with its crc32c field recomputed as the
 * header documents (CRC-32C of memory, then norm, then extra bytes), so
 * mutated shapes and arrays reach the checks behind the checksum. A state
 * that loads must pack and load again to the same values.
 */
#include "proto/ultrashard.pb-c.h"
#include "shard/crc32c.h"
#include "shard/session.h"
#include "tests/fuzz/fuzz_util.h"

#define FUZZ_SESSION_ID "fuzz-session"

static void try_unpack(const uint8_t *data, size_t size)
{
    us_session_state s;
    us_err err = {0};
    int rc = us_session_unpack(data, size, FUZZ_SESSION_ID, "fuzz input", &s, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return;
    FUZZ_CHECK(strcmp(s.id, FUZZ_SESSION_ID) == 0, "loaded id '%s'", s.id);
    rc = us_session_check_shape(&s, s.layers, s.heads, s.d_key, s.d_value, &err);
    FUZZ_CHECK(rc == US_OK, "own shape refused: %s", err.msg);
    uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    rc = us_session_pack(&s, s.generation, &packed, &packed_bytes, &err);
    FUZZ_CHECK(rc == US_OK, "repack: %s", err.msg);
    us_session_state again;
    rc = us_session_unpack(packed, packed_bytes, FUZZ_SESSION_ID, "repacked", &again, &err);
    FUZZ_CHECK(rc == US_OK, "repacked state does not load: %s", err.msg);
    size_t n_norm = (size_t)s.layers * s.heads * s.d_key;
    FUZZ_CHECK(again.generation == s.generation && again.tokens_seen == s.tokens_seen &&
               again.extra_bytes == s.extra_bytes &&
               memcmp(again.memory, s.memory, n_norm * s.d_value * sizeof(float)) == 0 &&
               memcmp(again.norm, s.norm, n_norm * sizeof(float)) == 0 &&
               (s.extra_bytes == 0 || memcmp(again.extra, s.extra, s.extra_bytes) == 0),
               "round trip changed the state");
    us_session_free(&again);
    free(packed);
    us_session_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_unpack(data, size);
    Ultrashard__SessionState *msg = ultrashard__session_state__unpack(NULL, size, data);
    if (msg == NULL)
        return 0;
    uint32_t crc = us_crc32c(0, msg->memory, msg->n_memory * sizeof(float));
    crc = us_crc32c(crc, msg->norm, msg->n_norm * sizeof(float));
    if (msg->extra.len)
        crc = us_crc32c(crc, msg->extra.data, msg->extra.len);
    if (crc != msg->crc32c) {
        msg->crc32c = crc;
        size_t n = ultrashard__session_state__get_packed_size(msg);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf == NULL)
            abort();
        ultrashard__session_state__pack(msg, buf);
        try_unpack(buf, n);
        free(buf);
    }
    ultrashard__session_state__free_unpacked(msg, NULL);
    return 0;
}
