/*
 * relay_core.h — the pure part of the lab's delay/loss relay (netrelay).
 *
 * netrelay joins N TAP devices (one per network namespace) into one emulated
 * link with a fixed one-way delay and random loss. Everything that does not
 * touch a file descriptor lives here so it can be unit-tested:
 *
 *   relay_queue   a FIFO of Ethernet frames per output port, each stamped
 *                 with the time it may leave (arrival + delay). Since the
 *                 delay is the same for every frame, a FIFO is also ordered
 *                 by due time, so the head is always the next frame to send.
 *                 Bounded: a full queue drops the new frame (tail drop, as
 *                 a router would), it never blocks or grows.
 *   relay_switch  a learning switch over the ports: it learns which port a
 *                 source MAC lives on; unicast to a known MAC goes to that
 *                 port only, everything else (broadcast, multicast, unknown)
 *                 is flooded to every other port. With two ports this is a
 *                 plain point-to-point link.
 *   relay_loss    a seeded SplitMix64 stream deciding frame loss, so a run
 *                 with the same seed drops the same frame numbers.
 *
 * Functions that can fail return US_OK or a negative US_E* code and fill an
 * optional us_err; they leave the object unchanged on failure.
 */
#ifndef US_RELAY_CORE_H
#define US_RELAY_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define RELAY_MAX_PORTS        16
#define RELAY_FRAME_MAX_BYTES  2048   /* TAP MTU 1500 -> frames <= 1514 bytes */
#define RELAY_ETH_HEADER_BYTES 14
#define RELAY_MAC_TABLE_SIZE   64

typedef struct relay_frame {
    uint64_t due_ns;                  /* CLOCK_MONOTONIC time it may leave */
    uint32_t len;
    uint8_t  data[RELAY_FRAME_MAX_BYTES];
} relay_frame;

typedef struct relay_queue {
    relay_frame *slots;               /* ring of capacity_frames, owned */
    uint32_t capacity_frames;
    uint32_t head;                    /* index of the oldest frame */
    uint32_t count;
} relay_queue;

/* Allocates a ring of capacity_frames (1 .. 1<<20). US_EINVAL / US_ENOMEM. */
int relay_queue_init(relay_queue *q, uint32_t capacity_frames, us_err *err);
void relay_queue_free(relay_queue *q);

/* Appends a copy of frame[0..len) due at due_ns. Returns US_OK, US_ERANGE
 * when the queue is full, US_EINVAL when len is 0 or above
 * RELAY_FRAME_MAX_BYTES; the queue is unchanged on error. due_ns must not
 * be earlier than the tail's (constant delay keeps the FIFO sorted). */
int relay_queue_push(relay_queue *q, const uint8_t *frame, uint32_t len,
                     uint64_t due_ns, us_err *err);

/* Oldest frame or NULL when empty; valid until the next push/pop. */
const relay_frame *relay_queue_head(const relay_queue *q);
void relay_queue_pop(relay_queue *q);   /* no-op when empty */

/* Earliest due time over the heads of n queues; UINT64_MAX when all empty. */
uint64_t relay_earliest_due(const relay_queue *queues, int n);

/* Nanoseconds from now_ns until due_ns, 0 when already due. */
static inline uint64_t relay_wait_ns(uint64_t due_ns, uint64_t now_ns)
{
    return due_ns > now_ns ? due_ns - now_ns : 0;
}

typedef struct relay_switch {
    int n_ports;
    int n_macs;
    struct { uint8_t mac[6]; int port; } macs[RELAY_MAC_TABLE_SIZE];
} relay_switch;

/* n_ports in [2, RELAY_MAX_PORTS]. US_EINVAL otherwise. */
int relay_switch_init(relay_switch *sw, int n_ports, us_err *err);

/* Learns the source MAC of a frame that arrived on in_port and returns the
 * bitmask of ports it must be sent to (never in_port). Runt frames (shorter
 * than an Ethernet header) and a bad in_port give 0. A full MAC table
 * stops learning; unknown destinations are flooded, so that only costs
 * bandwidth, never correctness. */
uint32_t relay_switch_route(relay_switch *sw, int in_port,
                            const uint8_t *frame, uint32_t len);

typedef struct relay_loss {
    uint64_t state;          /* SplitMix64 state */
    uint64_t threshold;      /* drop when next value < threshold */
    bool     drop_all;       /* loss = 100% */
} relay_loss;

/* loss_percent in [0, 100]; US_EINVAL otherwise. */
int relay_loss_init(relay_loss *l, double loss_percent, uint64_t seed, us_err *err);
/* True when this frame is lost. Advances the stream by one value. */
bool relay_loss_drop(relay_loss *l);

#endif
