/* transport.c — backend selection and the shared parts of us_transport. */
#include "proto/transport.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

int us_transport_open(const char *name, const us_world *world,
                      const us_transport_opts *opts, us_transport **out, us_err *err)
{
    if (name == NULL || strcmp(name, "mpi") == 0)
        return us_transport_open_mpi(world, out, err);
    if (strcmp(name, "fabric") == 0)
        return us_transport_open_fabric(world, opts, out, err);
    return us_err_set(err, US_EINVAL, "unknown transport '%s' (expected mpi or fabric)",
                      name);
}

void us_transport_idle(const us_transport *t)
{
    /* 2 cores shared by several ranks: never spin without yielding */
    if (!t->progress_yields)
        sched_yield();
}

int us_transport_xchg_wait(us_transport *t, us_err *err)
{
    for (;;) {
        bool done = false;
        int rc = t->ops->xchg_test(t, &done, err);
        if (rc != US_OK || done)
            return rc;
        us_transport_idle(t);
    }
}

int us_transport_exchange(us_transport *t, us_xchg_dir dir, const void *send,
                          const uint64_t *send_off, const uint64_t *send_len,
                          us_err *err)
{
    int rc = us_transport_xchg_start(t, dir, send, send_off, send_len, err);
    if (rc != US_OK)
        return rc;
    return us_transport_xchg_wait(t, err);
}

int us_transport_recv_alloc(us_transport *t, uint64_t total_bytes, us_err *err)
{
    /* Kept across exchanges and only grown, so steady-state rounds allocate
     * nothing; at least 8 bytes so an empty exchange has a valid pointer. */
    if (total_bytes < 8)
        total_bytes = 8;
    if (total_bytes <= t->recv_cap)
        return US_OK;
    uint64_t cap = t->recv_cap ? t->recv_cap : 4096;
    while (cap < total_bytes)
        cap *= 2;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap) != 0)
        return us_err_set(err, US_ENOMEM, "transport %s: receive buffer of %llu bytes",
                          t->ops->name, (unsigned long long)cap);
    free(t->recv_base);
    t->recv_base = p;
    t->recv_cap = cap;
    return US_OK;
}

void us_transport_close(us_transport *t)
{
    if (t != NULL)
        t->ops->close(t);
}
