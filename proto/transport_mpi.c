/*
 * transport_mpi.c — the mpi backend: point-to-point messages, probed.
 *
 * In a TO_SHARDS exchange every coordinator MPI_Isends one message (empty
 * ones too) to every shard, in TO_COORDS every shard to every coordinator,
 * so each receiver knows whom to expect; it MPI_Improbes for them (sizes
 * are not known ahead), lays out its receive buffer (8-aligned per source,
 * so wire headers are read in place) and MPI_Imrecvs the matched messages.
 * A shard therefore waits only for its coordinators, never for the other
 * shards (an MPI_Ialltoall of counts + MPI_Ialltoallv, the former scheme,
 * made every rank wait for every rank twice per exchange). A message to
 * oneself (a rank with both roles) is copied. Each transport has its own
 * duplicate of the world communicator, so exchanges of several transports
 * may be in flight at once (pipelined lookups, coordinator/lookup/pipe.h).
 * Messages are limited to INT_MAX bytes each (MPI counts are int); larger
 * ones are refused with US_ERANGE, never truncated.
 * No RMA: pull rounds on this backend fetch rows with ROWS messages.
 */
#include "proto/transport.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_transport {
    us_transport base;
    int stage;                 /* 0 idle, 1 probing for messages, 2 receiving */
    MPI_Comm comm;             /* dup of the world communicator */
    int tag;                   /* of this exchange: 1 + direction */
    int n_src, n_probed;       /* sources expected / matched so far */
    int *src;                  /* [size] expected source ranks */
    bool *probed;              /* [size] by index into src */
    MPI_Message *msg;          /* [size] matched messages */
    int *count;                /* [size] their byte counts */
    MPI_Request *reqs;         /* [2 * size]: sends, then receives */
    int n_reqs;
    const void *self_send;     /* a message to oneself: copied, not sent */
    uint64_t self_off, self_len;
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

/* Who sends to whom in direction dir: coordinators to shards, or shards to
 * coordinators (transport.h). */
static bool sends_in(const us_world *w, us_xchg_dir dir)
{
    return dir == US_XCHG_TO_SHARDS ? w->is_coordinator : w->is_shard;
}

/* Whether rank r is a shard (shards = true) or a coordinator. */
static bool rank_is(const us_world *w, int r, bool shards)
{
    int n = shards ? w->n_shards : w->n_coordinators;
    const int *ranks = shards ? w->shard_ranks : w->coordinator_ranks;
    for (int i = 0; i < n; i++)
        if (ranks[i] == r)
            return true;
    return false;
}

static bool rank_receives(const us_world *w, int r, us_xchg_dir dir)
{
    return rank_is(w, r, dir == US_XCHG_TO_SHARDS);
}

static bool sends_in_rank(const us_world *w, int r, us_xchg_dir dir)
{
    return rank_is(w, r, dir != US_XCHG_TO_SHARDS);
}

/* Posts one send to every receiver of this direction (empty ones too, so
 * receivers know how many to expect); a message to oneself is copied when
 * the receive side is laid out. */
static int post_sends(mpi_transport *m, us_xchg_dir dir, const void *send,
                      const uint64_t *send_off, const uint64_t *send_len, us_err *err)
{
    us_transport *t = &m->base;
    const us_world *w = t->world;
    static const uint64_t nothing = 0;
    for (int r = 0; r < w->size; r++) {
        uint64_t len = send_len ? send_len[r] : 0, off = send_off ? send_off[r] : 0;
        bool to = sends_in(w, dir) && rank_receives(w, r, dir);
        if (len > 0 && !to)
            return us_err_set(err, US_EINVAL, "transport mpi: rank %d: message of %llu bytes "
                              "to rank %d, which receives nothing in this direction",
                              w->rank, (unsigned long long)len, r);
        if (len > INT_MAX)
            return us_err_set(err, US_ERANGE, "transport mpi: rank %d: message of %llu "
                              "bytes to rank %d exceeds INT_MAX", w->rank,
                              (unsigned long long)len, r);
        if (!to || r == w->rank)
            continue;
        const uint8_t *buf = len > 0 ? (const uint8_t *)send + off : (const uint8_t *)&nothing;
        int rc = MPI_Isend((void *)buf, (int)len, MPI_BYTE, r, m->tag, m->comm,
                           &m->reqs[m->n_reqs++]);
        if (rc != MPI_SUCCESS)
            return mpi_fail(m, rc, "MPI_Isend", err);
        if (len > 0) {
            m->pending.msgs_sent++;
            m->pending.bytes_sent += len;
        }
    }
    return US_OK;
}

static int mpi_xchg_start(us_transport *t, us_xchg_dir dir, const void *send,
                          const uint64_t *send_off, const uint64_t *send_len, us_err *err)
{
    mpi_transport *m = (mpi_transport *)t;
    const us_world *w = t->world;
    if (t->in_flight)
        return us_err_set(err, US_EINVAL, "transport mpi: rank %d: exchange started "
                          "while another is in flight", w->rank);
    memset(&m->pending, 0, sizeof m->pending);
    m->tag = 1 + (int)dir;
    m->n_reqs = 0;
    m->n_src = m->n_probed = 0;
    for (int r = 0; r < w->size; r++) {
        t->recv_len[r] = 0;
        t->recv_off[r] = 0;
        if (rank_receives(w, w->rank, dir) && sends_in_rank(w, r, dir)) {
            m->probed[m->n_src] = false;
            m->src[m->n_src++] = r;
        }
    }
    m->self_send = send;
    m->self_off = send_off ? send_off[w->rank] : 0;
    m->self_len = send_len ? send_len[w->rank] : 0;
    int rc = post_sends(m, dir, send, send_off, send_len, err);
    if (rc != US_OK)
        return rc;   /* sends posted so far complete on their own (eager) or at close */
    m->stage = 1;
    t->in_flight = true;
    return US_OK;
}

/* Every expected message has been matched: lay out the receive buffer
 * (8-aligned per source, in rank order) and receive into it. */
static int start_receives(mpi_transport *m, us_err *err)
{
    us_transport *t = &m->base;
    const us_world *w = t->world;
    uint64_t total = 0;
    for (int i = 0; i < m->n_src; i++) {
        int r = m->src[i];
        uint64_t len = r == w->rank ? m->self_len : (uint64_t)m->count[i];
        total = (total + 7u) & ~(uint64_t)7u;
        t->recv_off[r] = total;
        t->recv_len[r] = len;
        total += len;
    }
    int rc = us_transport_recv_alloc(t, total, err);
    if (rc != US_OK)
        return rc;
    for (int i = 0; i < m->n_src; i++) {
        int r = m->src[i];
        uint8_t *dst = t->recv_base + t->recv_off[r];
        if (r == w->rank) {
            if (m->self_len > 0)
                memcpy(dst, (const uint8_t *)m->self_send + m->self_off, m->self_len);
            continue;
        }
        rc = MPI_Imrecv(dst, m->count[i], MPI_BYTE, &m->msg[i], &m->reqs[m->n_reqs++]);
        if (rc != MPI_SUCCESS)
            return mpi_fail(m, rc, "MPI_Imrecv", err);
        if (m->count[i] > 0) {
            m->pending.msgs_recv++;
            m->pending.bytes_recv += (uint64_t)m->count[i];
        }
    }
    m->stage = 2;
    return US_OK;
}

/* Matches whatever expected messages have arrived (never blocks). */
static int probe_sources(mpi_transport *m, us_err *err)
{
    const us_world *w = m->base.world;
    for (int i = 0; i < m->n_src; i++) {
        if (m->probed[i])
            continue;
        if (m->src[i] == w->rank) {
            m->probed[i] = true;
            m->n_probed++;
            continue;
        }
        int flag = 0;
        MPI_Status st;
        int rc = MPI_Improbe(m->src[i], m->tag, m->comm, &flag, &m->msg[i], &st);
        if (rc != MPI_SUCCESS)
            return mpi_fail(m, rc, "MPI_Improbe", err);
        if (!flag)
            continue;
        MPI_Get_count(&st, MPI_BYTE, &m->count[i]);
        m->probed[i] = true;
        m->n_probed++;
    }
    return US_OK;
}

static int mpi_xchg_test(us_transport *t, bool *done, us_err *err)
{
    mpi_transport *m = (mpi_transport *)t;
    *done = false;
    if (!t->in_flight)
        return us_err_set(err, US_EINVAL, "transport mpi: rank %d: no exchange in flight",
                          t->world->rank);
    int rc = US_OK;
    if (m->stage == 1 && (rc = probe_sources(m, err)) == US_OK && m->n_probed == m->n_src)
        rc = start_receives(m, err);
    if (rc != US_OK || m->stage != 2) {
        if (rc != US_OK) {
            m->stage = 0;
            t->in_flight = false;
        }
        return rc;
    }
    int flag = 0;
    rc = MPI_Testall(m->n_reqs, m->reqs, &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS)
        return mpi_fail(m, rc, "MPI_Testall", err);
    if (!flag)
        return US_OK;
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
    if (t->in_flight && m->n_reqs > 0)   /* posted sends and receives must finish */
        MPI_Waitall(m->n_reqs, m->reqs, MPI_STATUSES_IGNORE);
    if (m->comm != MPI_COMM_NULL)
        MPI_Comm_free(&m->comm);
    free(m->reqs);   /* the per-rank tables' one allocation */
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
    size_t size = (size_t)world->size;
    mpi_transport *m = calloc(1, sizeof *m);
    uint64_t *offs = calloc(size * 2, sizeof *offs);
    /* one allocation for the per-rank tables: src, count, probed, msg, reqs */
    size_t bytes = size * (2 * sizeof(int) + sizeof(bool) + sizeof(MPI_Message) +
                           2 * sizeof(MPI_Request)) + 64;
    uint8_t *tab = calloc(1, bytes);
    if (m == NULL || offs == NULL || tab == NULL) {
        free(m);
        free(offs);
        free(tab);
        return us_err_set(err, US_ENOMEM, "transport mpi: tables for %zu ranks", size);
    }
    m->reqs = (MPI_Request *)tab;
    m->msg = (MPI_Message *)(m->reqs + 2 * size);
    m->src = (int *)(m->msg + size);
    m->count = m->src + size;
    m->probed = (bool *)(m->count + size);
    int rc = MPI_Comm_dup(world->comm, &m->comm);   /* collective, as open is */
    if (rc != MPI_SUCCESS) {
        free(m);
        free(offs);
        free(tab);
        return us_err_set(err, US_EMPI, "transport mpi: rank %d: MPI_Comm_dup failed",
                          world->rank);
    }
    m->base.ops = &mpi_ops;
    m->base.world = world;
    m->base.recv_off = offs;
    m->base.recv_len = offs + size;
    strcpy(m->base.provider, "mpi");
    m->base.progress_yields = true;   /* Open MPI yields when oversubscribed */
    *out = &m->base;
    return US_OK;
}
