/* pipe.c — several lookups used round-robin (see pipe.h). */
#include "coordinator/lookup/pipe.h"

#include <string.h>

int us_lookup_pipe_open(us_lookup_pipe *p, int depth, const us_world *world,
                        us_transport *const *t, const us_table_info *table,
                        const us_rows_view *local, const us_lookup_opts *opts, us_err *err)
{
    memset(p, 0, sizeof *p);
    if (depth < 1 || depth > US_PIPE_MAX_DEPTH)
        return us_err_set(err, US_EINVAL, "lookup pipe: depth %d not in [1, %d]", depth,
                          US_PIPE_MAX_DEPTH);
    for (int i = 0; i < depth; i++) {
        int rc = us_lookup_open(&p->L[i], world, t[i], table, local, opts, err);
        if (rc != US_OK) {
            for (int j = 0; j < i; j++)
                us_lookup_close(p->L[j]);
            memset(p, 0, sizeof *p);
            return us_err_prefix(err, "lookup pipe: lookup %d of %d", i, depth);
        }
    }
    p->depth = depth;
    return US_OK;
}

us_lookup *us_lookup_pipe_lookup(const us_lookup_pipe *p, uint64_t i)
{
    return p->L[i % (uint64_t)p->depth];
}

int us_lookup_pipe_begin(us_lookup_pipe *p, const us_lookup_batch *batch, us_err *err)
{
    if (p->begun - p->ended >= (uint64_t)p->depth)
        return us_err_set(err, US_EINVAL, "lookup pipe: %d batches already in flight",
                          p->depth);
    int rc = us_lookup_begin(us_lookup_pipe_lookup(p, p->begun), batch, err);
    if (rc == US_OK)
        p->begun++;
    return rc;
}

int us_lookup_pipe_end(us_lookup_pipe *p, float *out, us_err *err)
{
    if (p->ended == p->begun)
        return us_err_set(err, US_EINVAL, "lookup pipe: no batch in flight");
    return us_lookup_end(us_lookup_pipe_lookup(p, p->ended++), out, err);
}

static bool all_stopped(const us_lookup_pipe *p)
{
    for (int i = 0; i < p->depth; i++)
        if (!us_lookup_stopped(p->L[i]))
            return false;
    return true;
}

/* Shard-only ranks: one round on each lookup that has not stopped, in turn
 * (all stop in the same turn: coordinators send their STOPs in whole turns). */
static int pipe_serve(void *self, us_err *err)
{
    us_lookup_pipe *p = self;
    while (!all_stopped(p))
        for (int i = 0; i < p->depth; i++) {
            if (us_lookup_stopped(p->L[i]))
                continue;
            int rc = us_lookup_run(p->L[i], NULL, NULL, err);
            if (rc != US_OK)
                return rc;
        }
    return US_OK;
}

static int pipe_finish(void *self, us_err *err)
{
    us_lookup_pipe *p = self;
    int rc;
    while (p->ended < p->begun) {   /* a failed work loop may leave batches in flight */
        us_err dropped = {0};
        rc = us_lookup_end(us_lookup_pipe_lookup(p, p->ended++), NULL, &dropped);
        if (rc == US_EMPI || rc == US_EFABRIC || rc == US_ENOMEM) {
            if (err)
                *err = dropped;
            return rc;
        }
    }
    for (; p->begun % (uint64_t)p->depth != 0; p->begun++, p->ended++)   /* whole turn */
        if ((rc = us_lookup_run(us_lookup_pipe_lookup(p, p->begun), NULL, NULL, err)) != US_OK)
            return rc;
    while (!all_stopped(p))
        for (int i = 0; i < p->depth; i++)
            if (!us_lookup_stopped(p->L[i]) && (rc = us_lookup_stop_round(p->L[i], err)) != US_OK)
                return rc;
    return US_OK;
}

static void pipe_close(void *self)
{
    us_lookup_pipe *p = self;
    for (int i = 0; i < p->depth; i++)
        us_lookup_close(p->L[i]);
    memset(p, 0, sizeof *p);
}

static const us_round_engine_ops pipe_engine_ops = {
    .name = "lookup pipe", .serve = pipe_serve, .finish = pipe_finish, .close = pipe_close,
};

us_round_engine us_lookup_pipe_engine(us_lookup_pipe *p)
{
    return (us_round_engine){ .ops = &pipe_engine_ops, .self = p };
}
