/* job.c — one place that decides each rank's part of a job (see job.h). */
#include "coordinator/lookup/job.h"

static int lookup_serve(void *self, us_err *err) { return us_lookup_serve(self, err); }
static int lookup_finish(void *self, us_err *err) { return us_lookup_finish(self, err); }
static void lookup_close(void *self) { us_lookup_close(self); }

static const us_round_engine_ops lookup_engine_ops = {
    .name = "lookup", .serve = lookup_serve, .finish = lookup_finish, .close = lookup_close,
};

us_round_engine us_lookup_engine(us_lookup *L)
{
    return (us_round_engine){ .ops = &lookup_engine_ops, .self = L };
}

static void engine_close(us_round_engine *e)
{
    if (e->ops->close != NULL)
        e->ops->close(e->self);
}

/* The transport itself failed: rounds can no longer be matched, so a finish
 * would wait for peers that will never answer. */
static bool round_sequence_broken(int rc)
{
    return rc == US_EMPI || rc == US_EFABRIC;
}

int us_job_run(const us_world *w, us_round_engine engine, us_job_work_fn work, void *arg,
               us_err *err)
{
    us_err local = {0};
    if (err == NULL)
        err = &local;
    if (!w->is_coordinator) {
        int rc = engine.ops->serve(engine.self, err);
        if (rc != US_OK) {
            us_err_prefix(err, "shard %d (rank %d) serving %s rounds", w->shard_index, w->rank,
                          engine.ops->name);
            us_world_abort(w, err);   /* coordinators may be waiting in a round */
        }
        engine_close(&engine);
        return US_OK;
    }
    int rc = work(arg, err);
    if (round_sequence_broken(rc))
        us_world_abort(w, err);
    us_err finish_err = {0};
    if (engine.ops->finish(engine.self, &finish_err) != US_OK) {
        us_err_prefix(&finish_err, "coordinator %d (rank %d) finishing %s rounds",
                      w->coordinator_index, w->rank, engine.ops->name);
        us_world_abort(w, &finish_err);   /* shards may be stuck in a round */
    }
    engine_close(&engine);
    return rc;
}
