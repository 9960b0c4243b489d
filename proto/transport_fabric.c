/*
 * transport_fabric.c — the fabric backend: libfabric RDM endpoints.
 *
 * Open: fi_getinfo(FI_EP_RDM, caps FI_TAGGED|FI_MSG|FI_RMA|FI_READ|
 * FI_REMOTE_READ), the provider picked by libfabric (FI_PROVIDER respected;
 * on the lab box shm and tcp;ofi_rxm work). Memory-registration modes asked
 * for: FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY; whichever the
 * provider keeps is honoured (offsets instead of addresses, our own keys).
 * FI_MR_LOCAL is not requested: message buffers are then plain memory.
 * One CQ (tagged format, no wait object) bound to the endpoint for both
 * directions; one AV table filled once from an MPI_Allgather of fi_getname.
 *
 * Exchange: tag = direction << 56 | source rank << 32 | sequence. Receivers
 * post one fi_trecv per expected source (exact tag, any address) into a slot
 * of max_msg_bytes, then senders fi_tsend (FI_EAGAIN: progress the CQ and
 * retry). Messages to oneself are copied. A message larger than
 * max_msg_bytes is refused before sending.
 *
 * Pull: rma_expose registers each held block (and int8 scale array) with
 * FI_REMOTE_READ and publishes (block, address, key, length) with
 * MPI_Allgatherv; coordinators keep one entry per (shard rank, block) and
 * fi_read rows straight from shard memory, bounds-checked against the
 * registered length. Reads of one's own blocks are memcpy.
 *
 * CMA path (shm only): every rank's pid is gathered at open; when the
 * provider is shm and kept FI_MR_VIRT_ADDR (published addresses are virtual
 * addresses) and a 1-byte process_vm_readv of each peer's first block works
 * (ptrace permission, seccomp), coordinators read by process_vm_readv
 * instead of fi_read: all spans from one rank in calls of up to 1024
 * iovecs, bounds-checked as above; the target need not poll. Measured
 * (README, bench-lookup): shm's own fast path costs one syscall, ~4.5 us,
 * per fi_read; batched, ~0.45 us per 512-byte row, which is the kernel
 * pinning each remote page. rma_span_exact is then set: the pull plan
 * merges only adjacent rows (gap bytes cost pinned pages, not round trips).
 * US_FABRIC_CMA=0 in the environment keeps fi_read (tests, A/B runs).
 *
 * Mapped path (on top of CMA): a shard whose view lives in a shared region
 * (us_rows_view share_*: a memfd, proto/shmem.h) publishes (fd, address,
 * size); a coordinator maps it read-only (pidfd_getfd, the same permission
 * as process_vm_readv) and a read inside it is a memcpy: no system call, no
 * page pinning. Reads outside a mapped region, or from a shard whose region
 * could not be mapped, stay on process_vm_readv. US_FABRIC_MAP=0 keeps
 * process_vm_readv for every read.
 *
 * Progress: data progress is manual on these providers, so every wait polls
 * the CQ; when a poll finds nothing the thread sched_yield()s (2 cores,
 * LAB.md). A shard serves remote fi_reads whenever it waits in an exchange.
 */
#include "proto/transport.h"

#include <inttypes.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/shmem.h"

#define FAB_VERSION FI_VERSION(1, 9)
#define CMA_IOV 1024            /* iovecs per process_vm_readv (IOV_MAX on Linux) */

typedef struct rma_entry {      /* what a shard publishes per held block */
    uint64_t block_id;
    uint64_t addr, key, bytes;
    uint64_t scale_addr, scale_key, scale_bytes;
} rma_entry;

typedef struct peer_map {      /* a shard's shared region, mapped here read-only */
    const uint8_t *map;         /* NULL: not mapped (read by process_vm_readv) */
    uint64_t base, bytes;       /* the region's address and size in the shard */
} peer_map;

/* What a rank publishes about its shared region (proto/shmem.h). */
typedef struct share_entry {
    uint64_t fd, base, bytes;   /* bytes 0: none */
} share_entry;

typedef struct op_ctx {
    struct fi_context2 fi;      /* first: providers may use it */
    int kind;                   /* 0 send, 1 recv, 2 read */
    int peer;
} op_ctx;

typedef struct fab_transport {
    us_transport base;
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_av *av;
    struct fid_cq *cq;
    struct fid_ep *ep;
    fi_addr_t *addrs;           /* [size] */
    uint64_t max_msg;
    uint64_t mr_mode;
    uint32_t seq;
    int pending_send, pending_recv, pending_read;
    op_ctx *send_ctx, *recv_ctx; /* [size] */
    op_ctx read_ctx;
    us_transport_stats pending;
    /* RMA: local registrations and the published table (coordinators) */
    struct fid_mr **mrs;
    size_t n_mrs;
    const us_rows_view *local;
    rma_entry *remote;          /* [size * n_blocks], block_id == UINT64_MAX: absent */
    uint64_t n_blocks;
    uint8_t *landing;
    uint64_t landing_cap;
    /* shm: read peers' memory by process_vm_readv, many spans per call */
    bool cma;
    int *pids;                  /* [size] process id of every rank */
    struct iovec *cma_iov;      /* [2 * CMA_IOV] local, then remote */
    peer_map *maps;             /* [size], coordinators on the CMA path */
    int error;                  /* sticky CQ error */
    char error_msg[US_ERR_MSG_BYTES];
} fab_transport;

static int fab_fail(fab_transport *f, const char *call, int rc, us_err *err)
{
    return us_err_set(err, US_EFABRIC, "transport fabric (%s): rank %d: %s failed: %s (%d)",
                      f->base.provider, f->base.world->rank, call, fi_strerror(-rc), rc);
}

/* Reads completions; returns the number handled, 0 if none, or < 0. */
static int fab_progress(fab_transport *f, us_err *err)
{
    struct fi_cq_tagged_entry ev[16];
    ssize_t n = fi_cq_read(f->cq, ev, 16);
    if (n == -FI_EAGAIN)
        return 0;
    if (n == -FI_EAVAIL) {
        struct fi_cq_err_entry e = {0};
        fi_cq_readerr(f->cq, &e, 0);
        op_ctx *c = e.op_context;
        return us_err_set(err, US_EFABRIC, "transport fabric (%s): rank %d: %s %s rank %d "
                          "failed: %s (prov %d)", f->base.provider, f->base.world->rank,
                          c ? (c->kind == 0 ? "send" : c->kind == 1 ? "receive" : "read")
                            : "operation",
                          c && c->kind == 1 ? "from" : "to", c ? c->peer : -1,
                          fi_strerror(e.err), e.prov_errno);
    }
    if (n < 0)
        return fab_fail(f, "fi_cq_read", (int)n, err);
    for (ssize_t i = 0; i < n; i++) {
        op_ctx *c = ev[i].op_context;
        if (c == NULL)
            continue;
        if (c->kind == 0) {
            f->pending_send--;
        } else if (c->kind == 1) {
            f->pending_recv--;
            f->base.recv_len[c->peer] = ev[i].len;
            if (ev[i].len > 0) {
                f->pending.msgs_recv++;
                f->pending.bytes_recv += ev[i].len;
            }
        } else {
            f->pending_read--;
        }
    }
    return (int)n;
}

static bool sends_to(const us_world *w, us_xchg_dir dir, int rank)
{
    return dir == US_XCHG_TO_SHARDS ? (w->is_coordinator && rank >= w->size - w->n_shards)
                                    : (w->is_shard && rank < w->n_coordinators);
}

static bool recvs_from(const us_world *w, us_xchg_dir dir, int rank)
{
    return dir == US_XCHG_TO_SHARDS ? (w->is_shard && rank < w->n_coordinators)
                                    : (w->is_coordinator && rank >= w->size - w->n_shards);
}

static int fab_xchg_start(us_transport *t, us_xchg_dir dir, const void *send,
                          const uint64_t *send_off, const uint64_t *send_len, us_err *err)
{
    fab_transport *f = (fab_transport *)t;
    const us_world *w = t->world;
    int size = w->size, me = w->rank, rc;
    if (t->in_flight)
        return us_err_set(err, US_EINVAL, "transport fabric: rank %d: exchange started "
                          "while another is in flight", me);
    if (f->error)
        return us_err_set(err, US_EFABRIC, "transport fabric: rank %d: unusable after: %s",
                          me, f->error_msg);
    f->seq++;
    memset(&f->pending, 0, sizeof f->pending);
    if ((rc = us_transport_recv_alloc(t, (uint64_t)size * f->max_msg, err)) != US_OK)
        return rc;
    for (int r = 0; r < size; r++) {
        t->recv_off[r] = (uint64_t)r * f->max_msg;
        t->recv_len[r] = 0;
        uint64_t len = send_len ? send_len[r] : 0;
        if (len > 0 && !sends_to(w, dir, r))
            return us_err_set(err, US_EINVAL, "transport fabric: rank %d: %s exchange has "
                              "no message from here to rank %d", me,
                              dir == US_XCHG_TO_SHARDS ? "request" : "response", r);
        if (len > f->max_msg)
            return us_err_set(err, US_ERANGE, "transport fabric: rank %d: message of %" PRIu64
                              " bytes to rank %d exceeds max_msg_bytes %" PRIu64, me, len, r,
                              f->max_msg);
    }
    uint64_t tag_base = ((uint64_t)dir << 56) | (uint64_t)f->seq;
    for (int r = 0; r < size; r++) {
        if (!recvs_from(w, dir, r) || r == me)
            continue;
        f->recv_ctx[r] = (op_ctx){ .kind = 1, .peer = r };
        uint64_t tag = tag_base | ((uint64_t)r << 32);
        ssize_t s;
        while ((s = fi_trecv(f->ep, t->recv_base + t->recv_off[r], f->max_msg, NULL,
                             FI_ADDR_UNSPEC, tag, 0, &f->recv_ctx[r])) == -FI_EAGAIN)
            if ((rc = fab_progress(f, err)) < 0)
                return rc;
        if (s != 0)
            return fab_fail(f, "fi_trecv", (int)s, err);
        f->pending_recv++;
    }
    for (int r = 0; r < size; r++) {
        if (!sends_to(w, dir, r))
            continue;
        uint64_t len = send_len ? send_len[r] : 0;
        const uint8_t *buf = (const uint8_t *)send + (send_off ? send_off[r] : 0);
        if (r == me) {      /* a rank in both roles: local copy */
            if (recvs_from(w, dir, r)) {
                if (len)
                    memcpy(t->recv_base + t->recv_off[r], buf, len);
                t->recv_len[r] = len;
            }
            continue;
        }
        f->send_ctx[r] = (op_ctx){ .kind = 0, .peer = r };
        uint64_t tag = tag_base | ((uint64_t)me << 32);
        ssize_t s;
        while ((s = fi_tsend(f->ep, len ? buf : NULL, len, NULL, f->addrs[r], tag,
                             &f->send_ctx[r])) == -FI_EAGAIN)
            if ((rc = fab_progress(f, err)) < 0)
                return rc;
        if (s != 0)
            return fab_fail(f, "fi_tsend", (int)s, err);
        f->pending_send++;
        if (len > 0) {
            f->pending.msgs_sent++;
            f->pending.bytes_sent += len;
        }
    }
    t->in_flight = true;
    return US_OK;
}

static int fab_xchg_test(us_transport *t, bool *done, us_err *err)
{
    fab_transport *f = (fab_transport *)t;
    *done = false;
    if (!t->in_flight)
        return us_err_set(err, US_EINVAL, "transport fabric: rank %d: no exchange in flight",
                          t->world->rank);
    int rc = fab_progress(f, err);
    if (rc < 0) {
        f->error = 1;
        snprintf(f->error_msg, sizeof f->error_msg, "%s", err ? err->msg : "CQ error");
        t->in_flight = false;
        return rc;
    }
    if (f->pending_send > 0 || f->pending_recv > 0)
        return US_OK;
    t->in_flight = false;
    t->stats.msgs_sent += f->pending.msgs_sent;
    t->stats.bytes_sent += f->pending.bytes_sent;
    t->stats.msgs_recv += f->pending.msgs_recv;
    t->stats.bytes_recv += f->pending.bytes_recv;
    t->stats.exchanges++;
    *done = true;
    return US_OK;
}

static void release_mrs(fab_transport *f)
{
    for (size_t i = 0; i < f->n_mrs; i++)
        if (f->mrs[i])
            fi_close(&f->mrs[i]->fid);
    free(f->mrs);
    f->mrs = NULL;
    f->n_mrs = 0;
}

static int reg(fab_transport *f, const void *p, uint64_t bytes, uint64_t *addr, uint64_t *key,
               us_err *err)
{
    struct fid_mr *mr = NULL;
    /* without FI_MR_PROV_KEY the keys are ours: unique per rank and region */
    uint64_t want_key = ((uint64_t)f->base.world->rank << 40) | (uint64_t)f->n_mrs;
    int rc = fi_mr_reg(f->domain, p, bytes, FI_REMOTE_READ, 0, want_key, 0, &mr, NULL);
    if (rc != 0)
        return fab_fail(f, "fi_mr_reg", rc, err);
    f->mrs[f->n_mrs++] = mr;
    *key = fi_mr_key(mr);
    *addr = (f->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)p : 0;
    return US_OK;
}

/* Registers every held block (and its int8 scales) for remote reads and
 * fills one published entry per block into mine[] (sized by the caller). */
static int register_blocks(fab_transport *f, const us_rows_view *v, rma_entry *mine,
                           us_err *err)
{
    uint64_t i = 0;
    for (uint64_t b = 0; v && b < v->n_blocks; b++) {
        if (v->blocks[b] == NULL)
            continue;
        uint64_t first = b << v->block_bits, rows = 1ull << v->block_bits;
        if (v->rows - first < rows)
            rows = v->rows - first;
        mine[i].block_id = b;
        mine[i].bytes = rows * v->row_stride_bytes;
        int rc = reg(f, v->blocks[b], mine[i].bytes, &mine[i].addr, &mine[i].key, err);
        if (rc == US_OK && v->dtype == US_DTYPE_INT8) {
            mine[i].scale_bytes = rows * sizeof(float);
            rc = reg(f, v->block_scales[b], mine[i].scale_bytes, &mine[i].scale_addr,
                     &mine[i].scale_key, err);
        }
        if (rc != US_OK)
            return rc;
        i++;
    }
    return US_OK;
}

/* What every rank published: entries of rank r at all + displs[r], counts[r]
 * bytes; counts and displs are both [size] arrays in one allocation. */
typedef struct rma_published {
    int      *counts, *displs;
    uint64_t *strides;           /* [size] row stride of each rank's blocks */
    uint64_t  max_blocks;        /* largest n_blocks of any rank's view */
    rma_entry *all;
} rma_published;

/* Collective: every rank learns every rank's entries. A rank whose local
 * registration failed (local_rc) still takes part, publishing nothing, so no
 * rank hangs; the call then returns local_rc. */
static int publish_entries(const us_world *w, const us_rows_view *v, const rma_entry *mine,
                           int local_rc, rma_published *pub, us_err *err)
{
    int size = w->size;
    uint64_t n_local = 0;
    for (uint64_t b = 0; v && b < v->n_blocks; b++)
        n_local += v->blocks[b] != NULL;
    int my_count = local_rc == US_OK ? (int)(n_local * sizeof *mine) : 0;
    uint64_t my_stride = v ? v->row_stride_bytes : 0;
    uint64_t my_blocks = v ? v->n_blocks : 0;
    if (MPI_Allgather(&my_count, 1, MPI_INT, pub->counts, 1, MPI_INT, w->comm) != MPI_SUCCESS ||
        MPI_Allgather(&my_stride, 1, MPI_UINT64_T, pub->strides, 1, MPI_UINT64_T, w->comm) !=
            MPI_SUCCESS ||
        MPI_Allreduce(&my_blocks, &pub->max_blocks, 1, MPI_UINT64_T, MPI_MAX, w->comm) !=
            MPI_SUCCESS)
        return us_err_set(err, US_EMPI, "transport fabric: rank %d: publishing RMA keys",
                          w->rank);
    uint64_t total = 0;
    for (int r = 0; r < size; r++) {
        pub->displs[r] = (int)total;
        total += (uint64_t)pub->counts[r];
    }
    pub->all = malloc(total ? total : 1);
    if (pub->all == NULL || MPI_Allgatherv(mine, my_count, MPI_BYTE, pub->all, pub->counts,
                                           pub->displs, MPI_BYTE, w->comm) != MPI_SUCCESS) {
        if (local_rc == US_OK)
            return us_err_set(err, US_EMPI, "transport fabric: rank %d: gathering RMA keys",
                              w->rank);
    }
    return local_rc;
}

/* Coordinators: one entry per (shard rank, block), absent blocks all-ones. */
static int build_remote_table(fab_transport *f, const rma_published *pub, us_err *err)
{
    int size = f->base.world->size;
    uint64_t max_blocks = pub->max_blocks;
    f->n_blocks = max_blocks;
    f->remote = malloc((size_t)size * max_blocks * sizeof *f->remote);
    if (f->remote == NULL)
        return us_err_set(err, US_ENOMEM, "transport fabric: rank %d: RMA table of %d x %"
                          PRIu64 " blocks", f->base.world->rank, size, max_blocks);
    memset(f->remote, 0xff, (size_t)size * max_blocks * sizeof *f->remote);
    for (int r = 0; r < size; r++) {
        const rma_entry *e = (const rma_entry *)((const uint8_t *)pub->all + pub->displs[r]);
        for (size_t j = 0; j < (size_t)pub->counts[r] / sizeof *e; j++)
            if (e[j].block_id < max_blocks)
                f->remote[(size_t)r * max_blocks + e[j].block_id] = e[j];
    }
    return US_OK;
}

/* Coordinators after the remote table is built: true when every peer's
 * published memory can be read by process_vm_readv. Only for shm (same
 * host, and FI_MR_VIRT_ADDR: published addresses are virtual addresses);
 * US_FABRIC_CMA=0 keeps fi_read. A refused probe (no ptrace permission,
 * seccomp) silently keeps fi_read. */
static bool cma_usable(const fab_transport *f)
{
    const char *env = getenv("US_FABRIC_CMA");
    if ((env && strcmp(env, "0") == 0) || strcmp(f->base.provider, "shm") != 0 ||
        !(f->mr_mode & FI_MR_VIRT_ADDR) || f->pids == NULL || f->remote == NULL)
        return false;
    const us_world *w = f->base.world;
    for (int r = 0; r < w->size; r++) {
        if (r == w->rank)
            continue;
        for (uint64_t b = 0; b < f->n_blocks; b++) {
            const rma_entry *e = &f->remote[(size_t)r * f->n_blocks + b];
            if (e->block_id != b || e->bytes == 0)
                continue;
            uint8_t probe;
            struct iovec loc = { &probe, 1 }, rem = { (void *)(uintptr_t)e->addr, 1 };
            if (process_vm_readv(f->pids[r], &loc, 1, &rem, 1, 0) != 1)
                return false;
            break;      /* one block per rank tells */
        }
    }
    return true;
}

/* Coordinators: whether rank published any block (a shard of a small
 * table may hold none, and then has nothing to map). */
static bool holds_blocks(const fab_transport *f, int rank)
{
    for (uint64_t b = 0; f->remote != NULL && b < f->n_blocks; b++)
        if (f->remote[(size_t)rank * f->n_blocks + b].block_id == b)
            return true;
    return false;
}

static void unmap_peers(fab_transport *f)
{
    for (int r = 0; f->maps && r < f->base.world->size; r++)
        us_shmem_unmap_peer(f->maps[r].map, f->maps[r].bytes);
    free(f->maps);
    f->maps = NULL;
}

/* Collective (every rank publishes its region); then coordinators on the
 * CMA path map every shard region they can. A region that cannot be mapped
 * is read by process_vm_readv as before, so only a failed allgather or
 * allocation is an error. Returns: US_OK, US_EMPI, US_ENOMEM. */
static int map_peers(fab_transport *f, const us_rows_view *v, us_err *err)
{
    const us_world *w = f->base.world;
    share_entry mine = {0};
    if (v && v->share_bytes > 0 && v->share_fd >= 0)
        mine = (share_entry){ (uint64_t)v->share_fd, (uint64_t)(uintptr_t)v->share_base,
                              v->share_bytes };
    share_entry *all = malloc((size_t)w->size * sizeof *all);
    if (all == NULL || MPI_Allgather(&mine, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, w->comm) !=
                           MPI_SUCCESS) {
        free(all);
        return us_err_set(err, all ? US_EMPI : US_ENOMEM, "transport fabric: rank %d: "
                          "publishing shared regions", w->rank);
    }
    const char *env = getenv("US_FABRIC_MAP");
    bool want = f->cma && !(env && strcmp(env, "0") == 0);
    if (want && (f->maps = calloc((size_t)w->size, sizeof *f->maps)) == NULL)
        want = false;
    for (int r = 0; want && r < w->size; r++) {
        if (r == w->rank || all[r].bytes == 0)
            continue;
        us_err why = {0};
        if (us_shmem_map_peer(&f->maps[r].map, f->pids[r], (int)all[r].fd, all[r].bytes,
                              &why) == US_OK) {
            f->maps[r].base = all[r].base;
            f->maps[r].bytes = all[r].bytes;
        } else {   /* still correct, only slower: say why once per exposure */
            fprintf(stderr, "transport fabric: rank %d: rank %d's rows not mapped here (%s); "
                    "reading them by process_vm_readv\n", w->rank, r, why.msg);
        }
    }
    bool every = want;    /* own blocks are copied, not mapped */
    for (int s = 0; every && s < w->n_shards; s++) {
        int r = us_world_shard_rank(w, s);
        every = r == w->rank || f->maps[r].map != NULL || !holds_blocks(f, r);
    }
    f->base.rma_mapped = every;
    free(all);
    return US_OK;
}

static int fab_rma_expose(us_transport *t, const us_rows_view *v, us_err *err)
{
    fab_transport *f = (fab_transport *)t;
    const us_world *w = t->world;
    int size = w->size, rc;
    release_mrs(f);
    unmap_peers(f);
    t->rma_mapped = false;
    free(f->remote);
    f->remote = NULL;
    t->rma_ready = false;
    f->cma = false;
    t->rma_span_exact = false;
    f->local = v;
    uint64_t n_local = 0;
    for (uint64_t b = 0; v && b < v->n_blocks; b++)
        n_local += v->blocks[b] != NULL;
    rma_entry *mine = calloc(n_local ? n_local : 1, sizeof *mine);
    f->mrs = calloc(2 * n_local + 1, sizeof *f->mrs);
    rma_published pub = {
        .counts = calloc(2 * (size_t)size, sizeof *pub.counts),
        .strides = calloc((size_t)size, sizeof *pub.strides),
    };
    if (!mine || !f->mrs || !pub.counts || !pub.strides) {
        /* nothing to do collectively without these tables: the caller must
         * abort the job (us_world_abort), as for any local fatal error */
        rc = us_err_set(err, US_ENOMEM, "transport fabric: rank %d: RMA tables", w->rank);
        goto free_tables;
    }
    pub.displs = pub.counts + size;
    rc = register_blocks(f, v, mine, err);
    rc = publish_entries(w, v, mine, rc, &pub, err);
    if (rc != US_OK)
        goto free_tables;
    memcpy(t->rma_row_stride, pub.strides, (size_t)size * sizeof *pub.strides);
    if (w->is_coordinator && pub.max_blocks > 0 &&
        (rc = build_remote_table(f, &pub, err)) != US_OK)
        goto free_tables;
    t->rma_ready = true;
    f->cma = w->is_coordinator && cma_usable(f);
    if (f->cma && f->cma_iov == NULL &&
        (f->cma_iov = malloc(2 * CMA_IOV * sizeof *f->cma_iov)) == NULL)
        f->cma = false;     /* fi_read works without the table */
    t->rma_span_exact = f->cma;
    rc = map_peers(f, v, err);
free_tables:
    free(pub.all);
    free(mine);
    free(pub.counts);
    free(pub.strides);
    return rc;
}

static int fab_rma_buffer(us_transport *t, uint64_t bytes, void **out, us_err *err)
{
    fab_transport *f = (fab_transport *)t;
    if (bytes > f->landing_cap) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0)
            return us_err_set(err, US_ENOMEM, "transport fabric: landing buffer of %" PRIu64
                              " bytes", bytes);
        free(f->landing);
        f->landing = p;
        f->landing_cap = bytes;
    }
    *out = f->landing;
    return US_OK;
}

/* The remote address and key of op, checked against what its rank published.
 * Returns: US_OK, or US_ERANGE naming block and rank. */
static int resolve_op(const fab_transport *f, const us_rma_op *op, uint64_t *raddr,
                      uint64_t *key, us_err *err)
{
    if (op->rank < 0 || op->rank >= f->base.world->size || op->block_id >= f->n_blocks)
        return us_err_set(err, US_ERANGE, "transport fabric: read of block %" PRIu64
                          " from rank %d: no such block or rank", op->block_id, op->rank);
    const rma_entry *e = &f->remote[(size_t)op->rank * f->n_blocks + op->block_id];
    uint64_t limit = op->scales ? e->scale_bytes : e->bytes;
    if (e->block_id != op->block_id || op->offset > limit || op->bytes > limit - op->offset)
        return us_err_set(err, US_ERANGE, "transport fabric: read of %" PRIu64 " bytes at "
                          "%" PRIu64 " of block %" PRIu64 " on rank %d: not published "
                          "there or out of bounds", op->bytes, op->offset, op->block_id,
                          op->rank);
    *raddr = (op->scales ? e->scale_addr : e->addr) + op->offset;
    *key = op->scales ? e->scale_key : e->key;
    return US_OK;
}

/* A read of one's own block is a memcpy. Returns: true if op was one. */
static bool copy_own(const fab_transport *f, const us_rma_op *op)
{
    if (op->rank != f->base.world->rank || f->local == NULL)
        return false;
    const uint8_t *src = op->scales ? (const uint8_t *)f->local->block_scales[op->block_id]
                                    : f->local->blocks[op->block_id];
    memcpy(op->dst, src + op->offset, op->bytes);
    return true;
}

/* Reads n iovecs (local in iov[0..n), remote in iov[CMA_IOV..]) from rank's
 * memory, resuming after a short count (the kernel stops at a page it cannot
 * pin; a second failure is the error). Returns: US_OK, or US_EFABRIC. */
static int cma_flush(fab_transport *f, int rank, size_t n, us_err *err)
{
    struct iovec *loc = f->cma_iov, *rem = f->cma_iov + CMA_IOV;
    size_t at = 0;
    while (at < n) {
        ssize_t got = process_vm_readv(f->pids[rank], loc + at, n - at, rem + at, n - at, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return us_err_set(err, US_EFABRIC, "transport fabric (%s): rank %d: "
                              "process_vm_readv of %zu spans from rank %d (pid %d): %s",
                              f->base.provider, f->base.world->rank, n - at, rank,
                              f->pids[rank], got < 0 ? strerror(errno) : "read nothing");
        for (size_t left = (size_t)got; left > 0;) {    /* skip what arrived */
            size_t take = left < loc[at].iov_len ? left : loc[at].iov_len;
            loc[at].iov_base = (uint8_t *)loc[at].iov_base + take;
            loc[at].iov_len -= take;
            rem[at].iov_base = (uint8_t *)rem[at].iov_base + take;
            rem[at].iov_len -= take;
            left -= take;
            if (loc[at].iov_len == 0)
                at++;
        }
        while (at < n && loc[at].iov_len == 0)
            at++;
    }
    return US_OK;
}

/* The lowest rank above `after` that ops read from (not one's own), or -1. */
static int next_read_rank(const fab_transport *f, size_t n_ops, const us_rma_op *ops, int after)
{
    int best = -1;
    for (size_t i = 0; i < n_ops; i++)
        if (ops[i].rank > after && ops[i].rank != f->base.world->rank && ops[i].bytes > 0 &&
            (best < 0 || ops[i].rank < best))
            best = ops[i].rank;
    return best;
}

/* Where op's bytes (at raddr in its rank) are mapped here, counted as one
 * read. Returns: the address, or NULL when they are not mapped. */
static const uint8_t *mapped_at(fab_transport *f, const us_rma_op *op, uint64_t raddr)
{
    const peer_map *m = f->maps ? &f->maps[op->rank] : NULL;
    if (m == NULL || m->map == NULL || raddr < m->base || raddr - m->base > m->bytes ||
        op->bytes > m->bytes - (raddr - m->base))
        return NULL;
    f->base.stats.rma_reads++;
    f->base.stats.rma_mapped++;
    f->base.stats.rma_bytes += op->bytes;
    return m->map + (raddr - m->base);
}

/* A read inside rank's mapped region is a memcpy. Returns: true if op was one. */
static bool read_mapped(fab_transport *f, const us_rma_op *op, uint64_t raddr)
{
    const uint8_t *src = mapped_at(f, op, raddr);
    if (src != NULL)
        memcpy(op->dst, src, op->bytes);
    return src != NULL;
}

static const void *fab_rma_direct(us_transport *t, const us_rma_op *op)
{
    fab_transport *f = (fab_transport *)t;
    uint64_t raddr, key;
    if (f->maps == NULL || op->rank == t->world->rank ||
        resolve_op(f, op, &raddr, &key, NULL) != US_OK)
        return NULL;
    return mapped_at(f, op, raddr);
}

/* CMA path: every op is checked and own blocks copied first; then, rank by
 * rank, that rank's ops go into process_vm_readv calls of up to CMA_IOV
 * spans (column placement interleaves ranks op by op).
 * Returns: US_OK, US_ERANGE, US_EFABRIC. */
static int cma_read(fab_transport *f, size_t n_ops, const us_rma_op *ops, us_err *err)
{
    uint64_t raddr, key;
    int rc;
    for (size_t i = 0; i < n_ops; i++) {
        if ((rc = resolve_op(f, &ops[i], &raddr, &key, err)) != US_OK)
            return rc;
        if (ops[i].bytes > 0)
            copy_own(f, &ops[i]);
    }
    for (int r = next_read_rank(f, n_ops, ops, -1); r >= 0;
         r = next_read_rank(f, n_ops, ops, r)) {
        size_t n = 0;
        for (size_t i = 0; i < n_ops; i++) {
            const us_rma_op *op = &ops[i];
            if (op->rank != r || op->bytes == 0)
                continue;
            resolve_op(f, op, &raddr, &key, NULL);     /* checked above */
            if (read_mapped(f, op, raddr))
                continue;
            f->cma_iov[n] = (struct iovec){ .iov_base = op->dst, .iov_len = op->bytes };
            f->cma_iov[CMA_IOV + n] = (struct iovec){
                .iov_base = (void *)(uintptr_t)raddr, .iov_len = op->bytes };
            f->base.stats.rma_reads++;
            f->base.stats.rma_bytes += op->bytes;
            if (++n == CMA_IOV) {
                if ((rc = cma_flush(f, r, n, err)) != US_OK)
                    return rc;
                n = 0;
            }
        }
        if (n > 0 && (rc = cma_flush(f, r, n, err)) != US_OK)
            return rc;
    }
    return US_OK;
}

static int fab_rma_read(us_transport *t, size_t n_ops, const us_rma_op *ops, us_err *err)
{
    fab_transport *f = (fab_transport *)t;
    int rc;
    if (!t->rma_ready)
        return us_err_set(err, US_EINVAL, "transport fabric: rank %d: read before "
                          "rma_expose", t->world->rank);
    if (f->cma)
        return cma_read(f, n_ops, ops, err);
    f->read_ctx = (op_ctx){ .kind = 2, .peer = -1 };
    for (size_t i = 0; i < n_ops; i++) {
        const us_rma_op *op = &ops[i];
        uint64_t raddr, key;
        if ((rc = resolve_op(f, op, &raddr, &key, err)) != US_OK)
            return rc;
        if (copy_own(f, op))
            continue;
        ssize_t s;
        while ((s = fi_read(f->ep, op->dst, op->bytes, NULL, f->addrs[op->rank], raddr, key,
                            &f->read_ctx)) == -FI_EAGAIN)
            if ((rc = fab_progress(f, err)) < 0)
                return rc;
        if (s != 0)
            return fab_fail(f, "fi_read", (int)s, err);
        f->pending_read++;
        t->stats.rma_reads++;
        t->stats.rma_bytes += op->bytes;
    }
    while (f->pending_read > 0) {
        rc = fab_progress(f, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            sched_yield();
    }
    return US_OK;
}

static void fab_close(us_transport *t)
{
    fab_transport *f = (fab_transport *)t;
    release_mrs(f);
    unmap_peers(f);
    if (f->ep) fi_close(&f->ep->fid);
    if (f->av) fi_close(&f->av->fid);
    if (f->cq) fi_close(&f->cq->fid);
    if (f->domain) fi_close(&f->domain->fid);
    if (f->fabric) fi_close(&f->fabric->fid);
    if (f->info) fi_freeinfo(f->info);
    free(f->remote);
    free(f->landing);
    free(f->cma_iov);
    free(f->pids);
    free(f->addrs);
    free(f->send_ctx);
    free(t->recv_base);
    free(t->recv_off);
    free(t->rma_row_stride);
    free(f);
}

static int fab_poll(us_transport *t, us_err *err)
{
    int rc = fab_progress((fab_transport *)t, err);
    return rc < 0 ? rc : US_OK;
}

static const us_transport_ops fab_ops = {
    .name = "fabric",
    .xchg_start = fab_xchg_start,
    .xchg_test = fab_xchg_test,
    .rma_expose = fab_rma_expose,
    .rma_buffer = fab_rma_buffer,
    .rma_read = fab_rma_read,
    .rma_direct = fab_rma_direct,
    .poll = fab_poll,
    .close = fab_close,
};

/* Endpoint set-up on this rank; the caller reports failures collectively. */
static int fab_setup(fab_transport *f, us_err *err)
{
    struct fi_info *hints = fi_allocinfo();
    if (hints == NULL)
        return us_err_set(err, US_ENOMEM, "transport fabric: fi_allocinfo");
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_TAGGED | FI_MSG | FI_RMA | FI_READ | FI_REMOTE_READ;
    hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    int rc = fi_getinfo(FAB_VERSION, NULL, NULL, 0, hints, &f->info);
    fi_freeinfo(hints);
    if (rc != 0)
        return us_err_set(err, US_EFABRIC, "transport fabric: rank %d: no provider offers "
                          "RDM with tagged messages and RMA reads (FI_PROVIDER=%s): %s",
                          f->base.world->rank, getenv("FI_PROVIDER") ? getenv("FI_PROVIDER")
                          : "any", fi_strerror(-rc));
    snprintf(f->base.provider, sizeof f->base.provider, "%s",
             f->info->fabric_attr->prov_name);
    f->mr_mode = f->info->domain_attr->mr_mode;
    /* a read then completes only when the target rank polls its CQ */
    f->base.rma_manual_progress = f->info->domain_attr->data_progress != FI_PROGRESS_AUTO;
    if (f->mr_mode & (FI_MR_LOCAL | FI_MR_RAW | FI_MR_ENDPOINT))
        return us_err_set(err, US_EUNSUPP, "transport fabric: provider %s needs memory "
                          "registration modes this build does not do (0x%" PRIx64 ")",
                          f->base.provider, f->mr_mode);
    struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_NONE,
                                  .size = 1024 };
    struct fi_av_attr av_attr = { .type = FI_AV_TABLE };
    if ((rc = fi_fabric(f->info->fabric_attr, &f->fabric, NULL)) != 0)
        return fab_fail(f, "fi_fabric", rc, err);
    if ((rc = fi_domain(f->fabric, f->info, &f->domain, NULL)) != 0)
        return fab_fail(f, "fi_domain", rc, err);
    if ((rc = fi_cq_open(f->domain, &cq_attr, &f->cq, NULL)) != 0)
        return fab_fail(f, "fi_cq_open", rc, err);
    if ((rc = fi_av_open(f->domain, &av_attr, &f->av, NULL)) != 0)
        return fab_fail(f, "fi_av_open", rc, err);
    if ((rc = fi_endpoint(f->domain, f->info, &f->ep, NULL)) != 0)
        return fab_fail(f, "fi_endpoint", rc, err);
    if ((rc = fi_ep_bind(f->ep, &f->av->fid, 0)) != 0)
        return fab_fail(f, "fi_ep_bind(av)", rc, err);
    if ((rc = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV)) != 0)
        return fab_fail(f, "fi_ep_bind(cq)", rc, err);
    if ((rc = fi_enable(f->ep)) != 0)
        return fab_fail(f, "fi_enable", rc, err);
    return US_OK;
}

int us_transport_open_fabric(const us_world *world, const us_transport_opts *opts,
                             us_transport **out, us_err *err)
{
    int size = world->size, rc;
    fab_transport *f = calloc(1, sizeof *f);
    if (f == NULL)
        return us_err_set(err, US_ENOMEM, "transport fabric: state");
    f->base.ops = &fab_ops;
    f->base.world = world;
    f->max_msg = opts && opts->max_msg_bytes ? opts->max_msg_bytes : 1u << 20;
    f->max_msg = (f->max_msg + 7u) & ~(uint64_t)7u;   /* receive slots stay 8-aligned */
    f->addrs = calloc((size_t)size, sizeof *f->addrs);
    f->pids = calloc((size_t)size, sizeof *f->pids);
    f->send_ctx = calloc(2 * (size_t)size, sizeof *f->send_ctx);
    f->base.recv_off = calloc(2 * (size_t)size, sizeof(uint64_t));
    f->base.rma_row_stride = calloc((size_t)size, sizeof(uint64_t));
    if (!f->addrs || !f->pids || !f->send_ctx || !f->base.recv_off || !f->base.rma_row_stride) {
        fab_close(&f->base);
        return us_err_set(err, US_ENOMEM, "transport fabric: tables for %d ranks", size);
    }
    f->recv_ctx = f->send_ctx + size;
    f->base.recv_len = f->base.recv_off + size;
    us_err local = {0};
    rc = fab_setup(f, &local);
    /* everyone learns whether everyone succeeded before exchanging names */
    char name[256];
    size_t name_len = sizeof name;
    if (rc == US_OK && (rc = fi_getname(&f->ep->fid, name, &name_len)) != 0)
        rc = fab_fail(f, "fi_getname", rc, &local);
    int ok = rc == US_OK, all_ok = 0;
    int my_len = ok ? (int)name_len : 0, max_len = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, world->comm) != MPI_SUCCESS ||
        MPI_Allreduce(&my_len, &max_len, 1, MPI_INT, MPI_MAX, world->comm) != MPI_SUCCESS) {
        fab_close(&f->base);
        return us_err_set(err, US_EMPI, "transport fabric: rank %d: MPI_Allreduce", world->rank);
    }
    if (!all_ok) {
        fab_close(&f->base);
        if (!ok) {
            if (err)
                *err = local;
            return local.code;
        }
        return us_err_set(err, US_EFABRIC, "transport fabric: rank %d: another rank could "
                          "not open its endpoint", world->rank);
    }
    char *names = calloc((size_t)size, (size_t)max_len);
    int pid = (int)getpid();    /* for the shm CMA path (cma_usable) */
    if (names == NULL ||
        MPI_Allgather(name, max_len, MPI_BYTE, names, max_len, MPI_BYTE, world->comm) !=
            MPI_SUCCESS ||
        MPI_Allgather(&pid, 1, MPI_INT, f->pids, 1, MPI_INT, world->comm) != MPI_SUCCESS) {
        free(names);
        fab_close(&f->base);
        return us_err_set(err, US_EMPI, "transport fabric: rank %d: exchanging endpoint "
                          "names", world->rank);
    }
    int n = fi_av_insert(f->av, names, (size_t)size, f->addrs, 0, NULL);
    free(names);
    if (n != size) {
        rc = fab_fail(f, "fi_av_insert", n < 0 ? n : -FI_EINVAL, err);
        fab_close(&f->base);
        return rc;
    }
    *out = &f->base;
    return US_OK;
}
