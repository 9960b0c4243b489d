/* test_relay_core.c — the lab relay's frame queues, learning switch and loss
 * stream (deploy/lab/relay_core.h), without TAP devices. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "deploy/lab/relay_core.h"

/* A 60-byte Ethernet frame dst <- src whose payload byte 14 is `tag`. */
static uint32_t make_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint8_t tag)
{
    memset(f, 0, 60);
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x08;                       /* IPv4 ethertype, for realism */
    f[14] = tag;
    return 60;
}

static const uint8_t MAC_A[6] = { 0x02, 0, 0, 0, 0, 0xa };
static const uint8_t MAC_B[6] = { 0x02, 0, 0, 0, 0, 0xb };
static const uint8_t MAC_C[6] = { 0x02, 0, 0, 0, 0, 0xc };
static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t MCAST[6] = { 0x33, 0x33, 0, 0, 0, 1 };   /* IPv6 all-nodes */

static void test_queue_rejects_bad_input(void **state)
{
    (void)state;
    relay_queue q;
    us_err err = {0};
    assert_int_equal(relay_queue_init(&q, 0, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "capacity 0"));
    assert_int_equal(relay_queue_init(&q, (1u << 20) + 1, NULL), US_EINVAL);
    assert_int_equal(relay_queue_init(&q, 2, &err), US_OK);

    uint8_t big[RELAY_FRAME_MAX_BYTES + 1] = {0};
    assert_int_equal(relay_queue_push(&q, big, 0, 1, &err), US_EINVAL);
    assert_int_equal(relay_queue_push(&q, big, RELAY_FRAME_MAX_BYTES + 1, 1, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "2049 bytes"));
    assert_int_equal(q.count, 0);
    assert_null(relay_queue_head(&q));
    relay_queue_pop(&q);                      /* empty: no-op */
    assert_int_equal(q.count, 0);

    /* Largest frame is accepted; full queue refuses and is unchanged. */
    big[0] = 7;
    assert_int_equal(relay_queue_push(&q, big, RELAY_FRAME_MAX_BYTES, 10, NULL), US_OK);
    assert_int_equal(relay_queue_push(&q, big, 1, 20, NULL), US_OK);
    assert_int_equal(relay_queue_push(&q, big, 1, 30, &err), US_ERANGE);
    assert_non_null(strstr(err.msg, "full"));
    assert_int_equal(q.count, 2);
    assert_int_equal(relay_queue_head(&q)->due_ns, 10);
    assert_int_equal(relay_queue_head(&q)->len, RELAY_FRAME_MAX_BYTES);
    relay_queue_free(&q);
    assert_null(q.slots);
}

static void test_queue_copies_and_keeps_order(void **state)
{
    (void)state;
    relay_queue q;
    assert_int_equal(relay_queue_init(&q, 3, NULL), US_OK);
    uint8_t f[60];
    /* Push/pop across the ring's wrap point several times. */
    for (int round = 0; round < 5; round++) {
        for (uint8_t k = 0; k < 3; k++) {
            make_frame(f, MAC_B, MAC_A, (uint8_t)(round * 10 + k));
            assert_int_equal(relay_queue_push(&q, f, 60, (uint64_t)(100 * round + k), NULL), US_OK);
            f[14] = 0xee;                     /* the queue holds a copy */
        }
        for (uint8_t k = 0; k < 3; k++) {
            const relay_frame *h = relay_queue_head(&q);
            assert_non_null(h);
            assert_int_equal(h->data[14], round * 10 + k);
            assert_int_equal(h->due_ns, 100 * round + k);
            assert_int_equal(h->len, 60);
            relay_queue_pop(&q);
        }
        assert_null(relay_queue_head(&q));
        /* leave one frame behind so the next round starts mid-ring */
        if (round % 2 == 0) {
            assert_int_equal(relay_queue_push(&q, f, 60, 0, NULL), US_OK);
            relay_queue_pop(&q);
        }
    }
    relay_queue_free(&q);
}

/* The ring against a plain array model under a random push/pop sequence. */
static void test_queue_matches_reference_model(void **state)
{
    (void)state;
    enum { CAP = 5, OPS = 20000 };
    relay_queue q;
    assert_int_equal(relay_queue_init(&q, CAP, NULL), US_OK);
    uint64_t model_due[OPS];
    uint8_t model_tag[OPS];
    size_t model_head = 0, model_tail = 0;
    uint64_t rng = 42, clock_ns = 0;
    uint8_t f[60];
    for (int op = 0; op < OPS; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        if ((rng >> 33) % 3 != 0) {           /* push 2/3 of the time */
            clock_ns += (rng >> 40) % 7;
            uint8_t tag = (uint8_t)(rng >> 50);
            make_frame(f, MAC_B, MAC_A, tag);
            int rc = relay_queue_push(&q, f, 60, clock_ns, NULL);
            if (model_tail - model_head == CAP) {
                assert_int_equal(rc, US_ERANGE);
            } else {
                assert_int_equal(rc, US_OK);
                model_due[model_tail] = clock_ns;
                model_tag[model_tail++] = tag;
            }
        } else {
            const relay_frame *h = relay_queue_head(&q);
            if (model_head == model_tail) {
                assert_null(h);
            } else {
                assert_non_null(h);
                assert_int_equal(h->due_ns, model_due[model_head]);
                assert_int_equal(h->data[14], model_tag[model_head]);
                model_head++;
            }
            relay_queue_pop(&q);
        }
        assert_int_equal(q.count, model_tail - model_head);
    }
    relay_queue_free(&q);
}

static void test_earliest_due_and_wait(void **state)
{
    (void)state;
    relay_queue qs[3];
    uint8_t f[60];
    make_frame(f, MAC_B, MAC_A, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(relay_queue_init(&qs[i], 4, NULL), US_OK);
    assert_true(relay_earliest_due(qs, 3) == UINT64_MAX);
    assert_int_equal(relay_queue_push(&qs[2], f, 60, 500, NULL), US_OK);
    assert_int_equal(relay_queue_push(&qs[1], f, 60, 700, NULL), US_OK);
    assert_int_equal(relay_queue_push(&qs[1], f, 60, 800, NULL), US_OK);
    assert_int_equal(relay_earliest_due(qs, 3), 500);
    assert_int_equal(relay_earliest_due(qs, 2), 700);   /* only the first two */
    relay_queue_pop(&qs[2]);
    assert_int_equal(relay_earliest_due(qs, 3), 700);
    assert_int_equal(relay_wait_ns(700, 200), 500);
    assert_int_equal(relay_wait_ns(700, 700), 0);
    assert_int_equal(relay_wait_ns(700, 900), 0);        /* overdue: no wait */
    for (int i = 0; i < 3; i++)
        relay_queue_free(&qs[i]);
}

static void test_switch_floods_then_learns(void **state)
{
    (void)state;
    relay_switch sw;
    us_err err = {0};
    assert_int_equal(relay_switch_init(&sw, 1, &err), US_EINVAL);
    assert_int_equal(relay_switch_init(&sw, RELAY_MAX_PORTS + 1, NULL), US_EINVAL);
    assert_int_equal(relay_switch_init(&sw, 3, &err), US_OK);
    uint8_t f[60];

    /* A (port 0) broadcasts an ARP request: everyone else gets it. */
    uint32_t n = make_frame(f, BCAST, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, n), 0x6);
    /* B (port 1) answers A: A is known, so only port 0. */
    n = make_frame(f, MAC_A, MAC_B, 0);
    assert_int_equal(relay_switch_route(&sw, 1, f, n), 0x1);
    /* A -> B: B is known now. */
    n = make_frame(f, MAC_B, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, n), 0x2);
    /* A -> C (never seen): flood to 1 and 2. */
    n = make_frame(f, MAC_C, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, n), 0x6);
    /* Multicast from B floods to 0 and 2. */
    n = make_frame(f, MCAST, MAC_B, 0);
    assert_int_equal(relay_switch_route(&sw, 1, f, n), 0x5);
    /* A frame to a MAC on the port it came from goes nowhere. */
    n = make_frame(f, MAC_A, MAC_C, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, n), 0);
    /* B moves to port 2: traffic to B follows it. */
    n = make_frame(f, MAC_A, MAC_B, 0);
    assert_int_equal(relay_switch_route(&sw, 2, f, n), 0x1);
    n = make_frame(f, MAC_B, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, n), 0x4);
    assert_int_equal(sw.n_macs, 3);            /* A, B, C: one entry each */
}

static void test_switch_rejects_runts_and_group_sources(void **state)
{
    (void)state;
    relay_switch sw;
    assert_int_equal(relay_switch_init(&sw, 2, NULL), US_OK);
    uint8_t f[60];
    uint32_t n = make_frame(f, MAC_B, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 0, f, RELAY_ETH_HEADER_BYTES - 1), 0);
    assert_int_equal(relay_switch_route(&sw, -1, f, n), 0);
    assert_int_equal(relay_switch_route(&sw, 2, f, n), 0);
    assert_int_equal(sw.n_macs, 0);
    /* Exactly a header is a frame; with two ports every frame goes across. */
    assert_int_equal(relay_switch_route(&sw, 0, f, RELAY_ETH_HEADER_BYTES), 0x2);
    assert_int_equal(sw.n_macs, 1);
    /* A group address as source is bogus: never learned. */
    n = make_frame(f, MAC_A, BCAST, 0);
    assert_int_equal(relay_switch_route(&sw, 1, f, n), 0x1);
    assert_int_equal(sw.n_macs, 1);
}

static void test_switch_full_table_still_delivers(void **state)
{
    (void)state;
    relay_switch sw;
    assert_int_equal(relay_switch_init(&sw, 4, NULL), US_OK);
    uint8_t f[60], mac[6] = { 0x02, 0x10, 0, 0, 0, 0 };
    for (int i = 0; i < RELAY_MAC_TABLE_SIZE + 10; i++) {
        mac[4] = (uint8_t)(i >> 8);
        mac[5] = (uint8_t)i;
        uint32_t n = make_frame(f, BCAST, mac, 0);
        relay_switch_route(&sw, i % 4, f, n);
    }
    assert_int_equal(sw.n_macs, RELAY_MAC_TABLE_SIZE);
    /* An unlearned host (table full) is flooded to: it still gets its frame. */
    mac[4] = (uint8_t)((RELAY_MAC_TABLE_SIZE + 5) >> 8);
    mac[5] = (uint8_t)(RELAY_MAC_TABLE_SIZE + 5);
    uint32_t n = make_frame(f, mac, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 3, f, n), 0x7);
    /* A learned one (index 1 came in on port 1) gets it alone. */
    mac[4] = 0;
    mac[5] = 1;
    n = make_frame(f, mac, MAC_A, 0);
    assert_int_equal(relay_switch_route(&sw, 3, f, n), 0x2);
}

static double loss_fraction(double percent, uint64_t seed, int draws)
{
    relay_loss l;
    assert_int_equal(relay_loss_init(&l, percent, seed, NULL), US_OK);
    int lost = 0;
    for (int i = 0; i < draws; i++)
        lost += relay_loss_drop(&l);
    return (double)lost / draws;
}

static void test_loss_rates(void **state)
{
    (void)state;
    relay_loss l;
    us_err err = {0};
    assert_int_equal(relay_loss_init(&l, -0.1, 1, &err), US_EINVAL);
    assert_non_null(strstr(err.msg, "-0.1"));
    assert_int_equal(relay_loss_init(&l, 100.5, 1, NULL), US_EINVAL);
    assert_int_equal(relay_loss_init(&l, NAN, 1, NULL), US_EINVAL);

    assert_true(loss_fraction(0.0, 7, 100000) == 0.0);
    assert_true(loss_fraction(100.0, 7, 100000) == 1.0);
    /* Binomial sd at p = 0.3, n = 200000 is 0.001: allow 5 sd. */
    double f30 = loss_fraction(30.0, 7, 200000);
    assert_true(fabs(f30 - 0.30) < 0.005);
    double f1 = loss_fraction(1.0, 99, 200000);
    assert_true(fabs(f1 - 0.01) < 0.0012);
    /* Just below 100% must not overflow the threshold. */
    assert_true(loss_fraction(99.99999999999999, 3, 10000) > 0.999);
}

static void test_loss_is_reproducible(void **state)
{
    (void)state;
    relay_loss a, b, c;
    assert_int_equal(relay_loss_init(&a, 50.0, 12345, NULL), US_OK);
    assert_int_equal(relay_loss_init(&b, 50.0, 12345, NULL), US_OK);
    assert_int_equal(relay_loss_init(&c, 50.0, 12346, NULL), US_OK);
    int same_seed_diff = 0, other_seed_diff = 0;
    for (int i = 0; i < 1000; i++) {
        bool da = relay_loss_drop(&a);
        same_seed_diff += da != relay_loss_drop(&b);
        other_seed_diff += da != relay_loss_drop(&c);
    }
    assert_int_equal(same_seed_diff, 0);
    assert_true(other_seed_diff > 300);    /* independent streams differ ~50% */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_rejects_bad_input),
        cmocka_unit_test(test_queue_copies_and_keeps_order),
        cmocka_unit_test(test_queue_matches_reference_model),
        cmocka_unit_test(test_earliest_due_and_wait),
        cmocka_unit_test(test_switch_floods_then_learns),
        cmocka_unit_test(test_switch_rejects_runts_and_group_sources),
        cmocka_unit_test(test_switch_full_table_still_delivers),
        cmocka_unit_test(test_loss_rates),
        cmocka_unit_test(test_loss_is_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
