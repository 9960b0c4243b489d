/* relay_core.c — frame queues, learning switch and loss stream of netrelay
 * (see relay_core.h). No I/O here. */
#include "deploy/lab/relay_core.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/hash.h"

int relay_queue_init(relay_queue *q, uint32_t capacity_frames, us_err *err)
{
    if (capacity_frames == 0 || capacity_frames > (1u << 20))
        return us_err_set(err, US_EINVAL, "relay queue: capacity %u frames outside [1, %u]",
                          capacity_frames, 1u << 20);
    relay_frame *slots = calloc(capacity_frames, sizeof *slots);
    if (slots == NULL)
        return us_err_set(err, US_ENOMEM, "relay queue: cannot allocate %u frames",
                          capacity_frames);
    q->slots = slots;
    q->capacity_frames = capacity_frames;
    q->head = 0;
    q->count = 0;
    return US_OK;
}

void relay_queue_free(relay_queue *q)
{
    free(q->slots);
    q->slots = NULL;
    q->capacity_frames = q->head = q->count = 0;
}

int relay_queue_push(relay_queue *q, const uint8_t *frame, uint32_t len,
                     uint64_t due_ns, us_err *err)
{
    if (len == 0 || len > RELAY_FRAME_MAX_BYTES)
        return us_err_set(err, US_EINVAL, "relay queue: frame of %u bytes (max %d)",
                          len, RELAY_FRAME_MAX_BYTES);
    if (q->count == q->capacity_frames)
        return us_err_set(err, US_ERANGE, "relay queue: full (%u frames)", q->count);
    relay_frame *slot = &q->slots[(q->head + q->count) % q->capacity_frames];
    slot->due_ns = due_ns;
    slot->len = len;
    memcpy(slot->data, frame, len);
    q->count++;
    return US_OK;
}

const relay_frame *relay_queue_head(const relay_queue *q)
{
    return q->count ? &q->slots[q->head] : NULL;
}

void relay_queue_pop(relay_queue *q)
{
    if (q->count == 0)
        return;
    q->head = (q->head + 1) % q->capacity_frames;
    q->count--;
}

uint64_t relay_earliest_due(const relay_queue *queues, int n)
{
    uint64_t earliest = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        const relay_frame *f = relay_queue_head(&queues[i]);
        if (f != NULL && f->due_ns < earliest)
            earliest = f->due_ns;
    }
    return earliest;
}

int relay_switch_init(relay_switch *sw, int n_ports, us_err *err)
{
    if (n_ports < 2 || n_ports > RELAY_MAX_PORTS)
        return us_err_set(err, US_EINVAL, "relay switch: %d ports outside [2, %d]",
                          n_ports, RELAY_MAX_PORTS);
    memset(sw, 0, sizeof *sw);
    sw->n_ports = n_ports;
    return US_OK;
}

static int switch_lookup(const relay_switch *sw, const uint8_t *mac)
{
    for (int i = 0; i < sw->n_macs; i++)
        if (memcmp(sw->macs[i].mac, mac, 6) == 0)
            return i;
    return -1;
}

uint32_t relay_switch_route(relay_switch *sw, int in_port,
                            const uint8_t *frame, uint32_t len)
{
    if (in_port < 0 || in_port >= sw->n_ports || len < RELAY_ETH_HEADER_BYTES)
        return 0;
    const uint8_t *dst = frame, *src = frame + 6;
    uint32_t all_others = ((1u << sw->n_ports) - 1) & ~(1u << in_port);

    /* Learn: a group address (bit 0 of the first byte) is never a source. */
    if ((src[0] & 1) == 0) {
        int i = switch_lookup(sw, src);
        if (i >= 0) {
            sw->macs[i].port = in_port;          /* a host may move */
        } else if (sw->n_macs < RELAY_MAC_TABLE_SIZE) {
            memcpy(sw->macs[sw->n_macs].mac, src, 6);
            sw->macs[sw->n_macs].port = in_port;
            sw->n_macs++;
        }
    }
    if (dst[0] & 1)                               /* broadcast / multicast */
        return all_others;
    int i = switch_lookup(sw, dst);
    if (i < 0)
        return all_others;                        /* unknown: flood */
    if (sw->macs[i].port == in_port)
        return 0;                                 /* already on its segment */
    return 1u << sw->macs[i].port;
}

static uint64_t splitmix64_next(uint64_t *state)
{
    return us_splitmix64_next(state);
}

int relay_loss_init(relay_loss *l, double loss_percent, uint64_t seed, us_err *err)
{
    if (!(loss_percent >= 0.0 && loss_percent <= 100.0))
        return us_err_set(err, US_EINVAL, "relay loss: %g%% outside [0, 100]", loss_percent);
    l->state = seed;
    l->drop_all = loss_percent >= 100.0;
    /* p * 2^64, computed in double: exact enough for a loss rate. Just
     * below 100% the product rounds to 2^64, which does not fit: clamp. */
    double scaled = loss_percent / 100.0 * 18446744073709551616.0;
    l->threshold = (l->drop_all || scaled >= 18446744073709551616.0) ? UINT64_MAX
                                                                      : (uint64_t)scaled;
    return US_OK;
}

bool relay_loss_drop(relay_loss *l)
{
    uint64_t v = splitmix64_next(&l->state);
    return l->drop_all || v < l->threshold;
}
