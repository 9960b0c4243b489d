/*
 * transport.h — how ranks move gather messages: one interface, two backends.
 *
 * A lookup round is two exchanges: requests from coordinators to shards
 * (US_XCHG_TO_SHARDS), then responses back (US_XCHG_TO_COORDS). In one
 * exchange every sending rank hands over one contiguous buffer holding one
 * message per destination rank (offsets 8-aligned, length 0 = nothing), and
 * every receiving rank gets one message per source rank. In a TO_SHARDS
 * exchange coordinators send to shards only, in TO_COORDS shards to
 * coordinators only (a message to any other rank is refused, US_EINVAL).
 * Every rank starts every exchange of a transport, in the same order, even
 * when it sends or receives nothing.
 *
 *   mpi     point-to-point: MPI_Isend to every receiver of the direction,
 *           MPI_Improbe + MPI_Imrecv from every sender (non-blocking, so a
 *           coordinator can compute between start and completion), on the
 *           transport's own duplicate communicator. Pull rounds use ROWS
 *           messages; no RMA.
 *   fabric  libfabric FI_EP_RDM endpoint (provider chosen by libfabric;
 *           FI_PROVIDER respected), names exchanged once with MPI_Allgather.
 *           Each message is one tagged send; in a TO_SHARDS exchange every
 *           coordinator sends to every shard, in TO_COORDS every shard to every
 *           coordinator (the lookup always sends at least a header), so
 *           receivers know how many to expect. Tags carry (sequence, source,
 *           direction). Messages to oneself are copied locally. Pull rounds
 *           read rows one-sided: shards register their blocks for
 *           FI_REMOTE_READ and publish (address, key) once (us_transport
 *           _rma_expose), coordinators fi_read (on shm: process_vm_readv,
 *           or plain loads from shards' shared regions mapped into the
 *           coordinator, us_transport_rma_direct). Waiting polls the completion
 *           queue and sched_yield()s when idle (2-core boxes, LAB.md), which
 *           also drives progress for reads targeting this rank.
 *
 * Lifetime: received buffers stay valid until the next exchange starts or the
 * transport closes. Send buffers must stay untouched until the exchange
 * completes. All calls return US_OK or a negative US_E* code with a message
 * naming the peer rank; after an error the transport should be closed.
 */
#ifndef US_TRANSPORT_H
#define US_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"
#include "proto/world.h"

typedef enum us_xchg_dir {
    US_XCHG_TO_SHARDS = 0,
    US_XCHG_TO_COORDS = 1,
} us_xchg_dir;

/* Counters since open (or the last us_transport_stats_reset). */
typedef struct us_transport_stats {
    uint64_t msgs_sent, msgs_recv;   /* messages with at least one byte */
    uint64_t bytes_sent, bytes_recv; /* message payload bytes, local copies excluded */
    uint64_t rma_reads, rma_bytes;   /* one-sided reads issued and bytes read */
    uint64_t rma_mapped;             /* of those, served from a mapped region */
    uint64_t exchanges;
} us_transport_stats;

/* One one-sided read: `bytes` from block `block_id` of shard rank `rank`,
 * starting `offset` bytes into that block (or into its int8 scale array when
 * `scales`), landing at `dst` inside the buffer from us_transport_rma_buffer. */
typedef struct us_rma_op {
    int      rank;
    bool     scales;
    uint64_t block_id;
    uint64_t offset;
    uint64_t bytes;
    void    *dst;
} us_rma_op;

typedef struct us_transport us_transport;

typedef struct us_transport_ops {
    const char *name;
    int  (*xchg_start)(us_transport *t, us_xchg_dir dir, const void *send,
                       const uint64_t *send_off, const uint64_t *send_len, us_err *err);
    int  (*xchg_test)(us_transport *t, bool *done, us_err *err);
    int  (*rma_expose)(us_transport *t, const us_rows_view *local, us_err *err);
    int  (*rma_buffer)(us_transport *t, uint64_t bytes, void **out, us_err *err);
    int  (*rma_read)(us_transport *t, size_t n_ops, const us_rma_op *ops, us_err *err);
    const void *(*rma_direct)(us_transport *t, const us_rma_op *op); /* NULL: none */
    int  (*poll)(us_transport *t, us_err *err);   /* NULL: nothing to progress */
    void (*close)(us_transport *t);
} us_transport_ops;

struct us_transport {
    const us_transport_ops *ops;
    const us_world *world;           /* borrowed */
    /* results of the last completed exchange, indexed by source rank */
    uint8_t  *recv_base;
    uint64_t *recv_off, *recv_len;
    uint64_t  recv_cap;              /* bytes allocated at recv_base */
    bool      in_flight;
    bool      rma_ready;             /* rma_expose done: pull by RMA available */
    bool      rma_manual_progress;   /* fi_reads wait for the target to poll
                                      * (FI_PROGRESS_MANUAL data progress; shm
                                      * reports it too, though its CMA and
                                      * mapped reads do not wait: lookup.c AUTO) */
    bool      rma_mapped;            /* every shard's memory is mapped here: a
                                      * row's one-sided read is a load
                                      * (us_transport_rma_direct; fabric on shm
                                      * with shared regions) */
    uint64_t *rma_row_stride;        /* [size] row stride of each shard's blocks */
    bool      rma_span_exact;        /* reads cost about one page pin each, not a
                                      * network round trip: merge only adjacent
                                      * rows, never read through gaps (fabric's
                                      * shm CMA path, transport_fabric.c) */
    bool      progress_yields;       /* testing an exchange already yields the
                                      * CPU when nothing is ready where that is
                                      * needed (MPI: Open MPI's progress engine
                                      * does on oversubscribed nodes or with
                                      * mpi_yield_when_idle): waiters must not
                                      * yield again (us_transport_idle) */
    const void *rma_owner;           /* user of the current exposure (one table per
                                      * transport; set and cleared by the lookup) */
    us_transport_stats stats;
    char provider[64];               /* fabric provider name, or "mpi" */
};

typedef struct us_transport_opts {
    /* fabric: largest message either direction (receive buffers are posted
     * at this size); the lookup computes it from its batch limits. */
    uint64_t max_msg_bytes;
} us_transport_opts;

/* A waiter's pause between two tests of t that found nothing: sched_yield,
 * unless t's tests yield already. A second yield per poll cost context
 * switches, each an expensive paravirtual interrupt enable on these VMs:
 * perf of 4 ranks on 2 cores (mpi push row) put 36% of all CPU there, and
 * one yield instead of two took the bench lookup ratio from 0.35-0.39 to
 * 0.41-0.44. Returns: nothing; cannot fail. */
void us_transport_idle(const us_transport *t);

/* Opens the backend named "mpi" or "fabric" on world (collective: every rank
 * calls it).
 * Returns: US_OK with *out set; US_EINVAL for an unknown name; US_EUNSUPP
 * for a provider whose memory-registration modes this build does not do;
 * US_EFABRIC / US_EMPI with the failing call named; US_ENOMEM. */
int us_transport_open(const char *name, const us_world *world,
                      const us_transport_opts *opts, us_transport **out, us_err *err);

/* The backends behind us_transport_open.
 * Returns: as us_transport_open. */
int us_transport_open_mpi(const us_world *world, us_transport **out, us_err *err);
int us_transport_open_fabric(const us_world *world, const us_transport_opts *opts,
                             us_transport **out, us_err *err);

/* Starts an exchange: send + send_off[r] holds send_len[r] bytes for rank r
 * (arrays of world->size). A rank that sends nothing may pass NULL arrays.
 * Returns: US_OK; US_EINVAL when an exchange is already in flight (or, on
 * fabric, a message goes against the exchange's direction); US_ERANGE for a
 * message over max_msg_bytes (fabric) or INT_MAX (mpi); US_EMPI / US_EFABRIC
 * naming the peer; US_ENOMEM. */
static inline int us_transport_xchg_start(us_transport *t, us_xchg_dir dir,
                                          const void *send, const uint64_t *send_off,
                                          const uint64_t *send_len, us_err *err)
{
    return t->ops->xchg_start(t, dir, send, send_off, send_len, err);
}

/* Progresses the exchange without blocking; *done = true when complete.
 * Returns: US_OK; US_EINVAL with no exchange in flight; US_EMPI /
 * US_EFABRIC naming the peer; US_EPROTO for a negative count and US_ERANGE
 * for more than INT_MAX bytes to receive (mpi); US_ENOMEM. */
static inline int us_transport_xchg_test(us_transport *t, bool *done, us_err *err)
{
    return t->ops->xchg_test(t, done, err);
}

/* Blocks (yielding the CPU when idle) until the exchange completes.
 * Returns: as us_transport_xchg_test. */
int us_transport_xchg_wait(us_transport *t, us_err *err);

/* start + wait. Returns: as us_transport_xchg_start, then _wait. */
int us_transport_exchange(us_transport *t, us_xchg_dir dir, const void *send,
                          const uint64_t *send_off, const uint64_t *send_len,
                          us_err *err);

/* Returns: the message received from rank `src` in the last exchange, *len
 * bytes (0: none); valid until the next exchange starts or close. */
static inline const void *us_transport_recv(const us_transport *t, int src, uint64_t *len)
{
    *len = t->recv_len[src];
    return t->recv_base + t->recv_off[src];
}

/* Collective. Shard ranks pass their table view (coordinators-only ranks pass
 * NULL); afterwards coordinators may rma_read any block a shard holds.
 * Registrations replace those of the previous call and live until the next
 * call or close: the view's memory must outlive them. A local failure to
 * allocate the key tables returns before the collectives (abort the job).
 * Returns: US_OK; US_EUNSUPP on the mpi backend; US_EFABRIC for a failed
 * registration or key exchange; US_ENOMEM. */
static inline int us_transport_rma_expose(us_transport *t, const us_rows_view *local,
                                          us_err *err)
{
    return t->ops->rma_expose(t, local, err);
}

/* A landing buffer of at least `bytes` for rma_read (registered memory);
 * valid until the next call or close.
 * Returns: US_OK with *out set; US_EUNSUPP (mpi); US_ENOMEM; US_EFABRIC
 * when registration fails. */
static inline int us_transport_rma_buffer(us_transport *t, uint64_t bytes, void **out,
                                          us_err *err)
{
    return t->ops->rma_buffer(t, bytes, out, err);
}

/* Issues all reads and waits for them.
 * Returns: US_OK; US_EUNSUPP (mpi); US_EINVAL before rma_expose; US_ERANGE
 * for a read of a block or span the target did not publish; US_EFABRIC
 * naming the target rank. */
static inline int us_transport_rma_read(us_transport *t, size_t n_ops,
                                        const us_rma_op *ops, us_err *err)
{
    return t->ops->rma_read(t, n_ops, ops, err);
}

/* Zero-copy one-sided read: where the target's memory is mapped into this
 * process (fabric on shm: proto/shmem.h regions), the address of op's
 * bytes there (op->dst unused), counted as one read. The bytes stay valid
 * until the next rma_expose or close.
 * Returns: the address, or NULL when op is not mapped here (then read it
 * with us_transport_rma_read). */
static inline const void *us_transport_rma_direct(us_transport *t, const us_rma_op *op)
{
    return t->ops->rma_direct != NULL && t->rma_ready ? t->ops->rma_direct(t, op) : NULL;
}

/* Frees t (not collective; NULL is a no-op). Returns: nothing. */
void us_transport_close(us_transport *t);

/* Drives progress outside an exchange without blocking: with manual-progress
 * providers, one-sided reads that target this rank complete only while it
 * polls, so a rank that waits on something else (a control message) calls
 * this in its wait loop.
 * Returns: US_OK; US_EFABRIC when the completion queue reports an error. */
static inline int us_transport_poll(us_transport *t, us_err *err)
{
    return t->ops->poll != NULL ? t->ops->poll(t, err) : US_OK;
}

/* Shared by backends: (re)sizes t->recv_* for a new exchange.
 * Returns: US_OK; US_ENOMEM naming the size. */
int us_transport_recv_alloc(us_transport *t, uint64_t total_bytes, us_err *err);

#endif
