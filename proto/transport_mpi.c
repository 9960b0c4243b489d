/*
 * transport_mpi.c — the mpi backend: counts first, then the bytes.
 *
 * An exchange is MPI_Ialltoall of one int per peer (the byte counts), then
 * MPI_Ialltoallv of the messages, both over the world communicator. Received
 * messages are placed 8-aligned in one buffer so wire headers are read in
 * place. Messages are limited to INT_MAX bytes each and in total (MPI counts
 * are int); larger exchanges are refused with US_ERANGE, never truncated.
 * No RMA: pull rounds on this backend fetch rows with ROWS messages.
 */
#include "proto/transport.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_transport {
    us_transport base;
    int stage;                 /* 0 idle, 1 counts in flight, 2 data in flight */
    MPI_Request req;
    const void *send;
    int *send_counts, *send_displs, *recv_counts, *recv_displs;
    us_transport_stats pending; /* added to stats when the exchange completes */
} mpi_transport;

static int mpi_fail(mpi_transport *m, int rc, const char *call, us_err *err)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    m->stage = 0;
    m->base.in_flight = false;
    return us_err_set(err, US_EMPI, "transport mpi: rank %d: %s failed: %s",
                      m->base.world->rank, call, text);
}

static int mpi_xchg_start(us_transport *t, us_xchg_dir dir, const void *send,
                          const uint64_t *send_off, const uint64_t *send_len, us_err *err)
{
    (void)dir; /* alltoallv covers both directions; roles only change counts */
    mpi_transport *m = (mpi_transport *)t;
    int size = t->world->size;
    if (t->in_flight)
        return us_err_set(err, US_EINVAL, "transport mpi: rank %d: exchange started "
                          "while another is in flight", t->world->rank);
    memset(&m->pending, 0, sizeof m->pending);
    for (int r = 0; r < size; r++) {
        uint64_t len = send_len ? send_len[r] : 0;
        uint64_t off = send_off ? send_off[r] : 0;
        if (len > INT_MAX || off > INT_MAX || off + len > INT_MAX)
            return us_err_set(err, US_ERANGE, "transport mpi: rank %d: message of %llu "
                              "bytes at offset %llu to rank %d exceeds INT_MAX",
                              t->world->rank, (unsigned long long)len,
                              (unsigned long long)off, r);
        m->send_counts[r] = (int)len;
        m->send_displs[r] = (int)off;
        if (len > 0 && r != t->world->rank) {
            m->pending.msgs_sent++;
            m->pending.bytes_sent += len;
        }
    }
    m->send = send;
    int rc = MPI_Ialltoall(m->send_counts, 1, MPI_INT, m->recv_counts, 1, MPI_INT,
                           t->world->comm, &m->req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(m, rc, "MPI_Ialltoall of counts", err);
    m->stage = 1;
    t->in_flight = true;
    return US_OK;
}

/* Counts are known: lay out the receive buffer and start the data exchange. */
static int mpi_start_data(mpi_transport *m, us_err *err)
{
    us_transport *t = &m->base;
    int size = t->world->size;
    uint64_t total = 0;
    for (int r = 0; r < size; r++) {
        if (m->recv_counts[r] < 0)
            return us_err_set(err, US_EPROTO, "transport mpi: rank %d: negative count "
                              "%d from rank %d", t->world->rank, m->recv_counts[r], r);
        total = (total + 7u) & ~(uint64_t)7u;
        t->recv_off[r] = total;
        t->recv_len[r] = (uint64_t)m->recv_counts[r];
        total += (uint64_t)m->recv_counts[r];
        if (total > INT_MAX)
            return us_err_set(err, US_ERANGE, "transport mpi: rank %d: %llu bytes to "
                              "receive exceed INT_MAX", t->world->rank,
                              (unsigned long long)total);
        m->recv_displs[r] = (int)t->recv_off[r];
        if (m->recv_counts[r] > 0 && r != t->world->rank) {
            m->pending.msgs_recv++;
            m->pending.bytes_recv += (uint64_t)m->recv_counts[r];
        }
    }
    int rc = us_transport_recv_alloc(t, total, err);
    if (rc != US_OK)
        return rc;
    /* MPI wants a non-const send pointer on older bindings; it never writes */
    static const uint64_t nothing = 0;   /* never aliased with the receive buffer */
    const void *send = m->send ? m->send : &nothing;
    rc = MPI_Ialltoallv((void *)send, m->send_counts, m->send_displs, MPI_BYTE,
                        t->recv_base, m->recv_counts, m->recv_displs, MPI_BYTE,
                        t->world->comm, &m->req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(m, rc, "MPI_Ialltoallv of messages", err);
    m->stage = 2;
    return US_OK;
}

static int mpi_xchg_test(us_transport *t, bool *done, us_err *err)
{
    mpi_transport *m = (mpi_transport *)t;
    *done = false;
    if (!t->in_flight)
        return us_err_set(err, US_EINVAL, "transport mpi: rank %d: no exchange in flight",
                          t->world->rank);
    int flag = 0, rc = MPI_Test(&m->req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS)
        return mpi_fail(m, rc, m->stage == 1 ? "MPI_Test (counts)" : "MPI_Test (data)", err);
    if (!flag)
        return US_OK;
    if (m->stage == 1) {
        rc = mpi_start_data(m, err);
        if (rc != US_OK) {
            m->stage = 0;
            t->in_flight = false;
        }
        return rc;
    }
    m->stage = 0;
    t->in_flight = false;
    t->stats.msgs_sent += m->pending.msgs_sent;
    t->stats.bytes_sent += m->pending.bytes_sent;
    t->stats.msgs_recv += m->pending.msgs_recv;
    t->stats.bytes_recv += m->pending.bytes_recv;
    t->stats.exchanges++;
    *done = true;
    return US_OK;
}

static int mpi_rma_expose(us_transport *t, const us_rows_view *local, us_err *err)
{
    (void)local;
    return us_err_set(err, US_EUNSUPP, "transport mpi: rank %d: one-sided reads need the "
                      "fabric transport (pull over mpi uses ROWS messages)",
                      t->world->rank);
}

static int mpi_rma_buffer(us_transport *t, uint64_t bytes, void **out, us_err *err)
{
    (void)bytes;
    (void)out;
    return mpi_rma_expose(t, NULL, err);
}

static int mpi_rma_read(us_transport *t, size_t n_ops, const us_rma_op *ops, us_err *err)
{
    (void)n_ops;
    (void)ops;
    return mpi_rma_expose(t, NULL, err);
}

static void mpi_close(us_transport *t)
{
    mpi_transport *m = (mpi_transport *)t;
    if (t->in_flight && m->req != MPI_REQUEST_NULL)
        MPI_Wait(&m->req, MPI_STATUS_IGNORE); /* collectives cannot be cancelled */
    free(m->send_counts);
    free(t->recv_base);
    free(t->recv_off);
    free(m);
}

static const us_transport_ops mpi_ops = {
    .name = "mpi",
    .xchg_start = mpi_xchg_start,
    .xchg_test = mpi_xchg_test,
    .rma_expose = mpi_rma_expose,
    .rma_buffer = mpi_rma_buffer,
    .rma_read = mpi_rma_read,
    .close = mpi_close,
};

int us_transport_open_mpi(const us_world *world, us_transport **out, us_err *err)
{
    int size = world->size;
    mpi_transport *m = calloc(1, sizeof *m);
    int *counts = calloc((size_t)size * 4, sizeof *counts);
    uint64_t *offs = calloc((size_t)size * 2, sizeof *offs);
    if (m == NULL || counts == NULL || offs == NULL) {
        free(m);
        free(counts);
        free(offs);
        return us_err_set(err, US_ENOMEM, "transport mpi: tables for %d ranks", size);
    }
    m->base.ops = &mpi_ops;
    m->base.world = world;
    m->base.recv_off = offs;
    m->base.recv_len = offs + size;
    m->send_counts = counts;
    m->send_displs = counts + size;
    m->recv_counts = counts + 2 * size;
    m->recv_displs = counts + 3 * size;
    m->req = MPI_REQUEST_NULL;
    strcpy(m->base.provider, "mpi");
    *out = &m->base;
    return US_OK;
}
