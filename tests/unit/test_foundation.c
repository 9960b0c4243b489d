/* test_foundation.c — error records, role assignment, wire schema round trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kernels/us_status.h"
#include "proto/world.h"
#include "proto/ultrashard.pb-c.h"

static void test_err_set_prefix(void **state)
{
    (void)state;
    us_err e = {0};
    assert_int_equal(us_err_set(&e, US_ECORRUPT, "block %d bad", 7), US_ECORRUPT);
    assert_int_equal(us_err_prefix(&e, "table %s", "t0"), US_ECORRUPT);
    assert_string_equal(e.msg, "table t0: block 7 bad");
    assert_int_equal(us_err_set(NULL, US_EIO, "x"), US_EIO);
    char big[2 * US_ERR_MSG_BYTES];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    us_err_set(&e, US_EINVAL, "%s", big);
    us_err_prefix(&e, "ctx");
    assert_int_equal(strlen(e.msg), US_ERR_MSG_BYTES - 1);
    assert_memory_equal(e.msg, "ctx: aaa", 8);
    us_err_clear(&e);
    assert_int_equal(e.code, US_OK);
    assert_string_equal(us_code_name(US_EPROTO), "EPROTO");
}

static void check_roles(int size, us_world_opts opts, int want_c, int want_s)
{
    int coords = 0, shards = 0;
    for (int r = 0; r < size; r++) {
        us_world w = {0};
        us_err e = {0};
        assert_int_equal(us_world_assign_roles(&w, r, size, &opts, &e), US_OK);
        assert_int_equal(w.n_coordinators, want_c);
        assert_int_equal(w.n_shards, want_s);
        coords += w.is_coordinator;
        shards += w.is_shard;
        if (w.is_shard)
            assert_int_equal(us_world_shard_rank(&w, w.shard_index), r);
        assert_true(w.is_coordinator || w.is_shard);
        free(w.shard_ranks);
        free(w.coordinator_ranks);
    }
    assert_int_equal(coords, want_c);
    assert_int_equal(shards, want_s);
}

static void test_roles(void **state)
{
    (void)state;
    check_roles(1, (us_world_opts){0}, 1, 1);
    check_roles(4, (us_world_opts){0}, 1, 3);
    check_roles(8, (us_world_opts){.coordinators = 3}, 3, 5);
    check_roles(4, (us_world_opts){.all_roles = true}, 4, 4);
    check_roles(4, (us_world_opts){.all_roles = true, .coordinators = 2}, 2, 4);
    us_world w = {0};
    us_err e = {0};
    assert_int_equal(us_world_assign_roles(&w, 0, 2, &(us_world_opts){.coordinators = 2}, &e),
                     US_EINVAL);
    assert_non_null(strstr(e.msg, "no shard rank"));
    assert_int_equal(us_world_assign_roles(&w, 3, 2, NULL, &e), US_EINVAL);
}

static void test_proto_roundtrip_and_unknown_fields(void **state)
{
    (void)state;
    Ultrashard__SessionState msg = ULTRASHARD__SESSION_STATE__INIT;
    float memory[3] = { 0.5f, 0.25f, -1.0f };
    msg.version = 1;
    msg.session_id = "s-42";
    msg.generation = 1ull << 40;
    msg.layers = 1;
    msg.n_memory = 3;
    msg.memory = memory;
    size_t n = ultrashard__session_state__get_packed_size(&msg);
    uint8_t *buf = malloc(n + 16);
    assert_non_null(buf);
    ultrashard__session_state__pack(&msg, buf);
    /* Append an unknown field (number 1000, varint 7): readers must tolerate it. */
    size_t m = n;
    uint32_t key = (1000u << 3) | 0;
    while (key >= 0x80) { buf[m++] = (uint8_t)(key | 0x80); key >>= 7; }
    buf[m++] = (uint8_t)key;
    buf[m++] = 7;
    Ultrashard__SessionState *got = ultrashard__session_state__unpack(NULL, m, buf);
    assert_non_null(got);
    assert_string_equal(got->session_id, "s-42");
    assert_true(got->generation == (1ull << 40));
    assert_int_equal(got->n_memory, 3);
    assert_true(got->memory[2] == -1.0f);
    assert_int_equal(got->base.n_unknown_fields, 1);
    ultrashard__session_state__free_unpacked(got, NULL);
    /* Truncated input is rejected, not misread. */
    assert_null(ultrashard__session_state__unpack(NULL, n - 3, buf));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_prefix),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_proto_roundtrip_and_unknown_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
