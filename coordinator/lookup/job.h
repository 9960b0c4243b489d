/*
 * job.h — which rank coordinates and which serves: the one place that starts
 * a job's roles.
 *
 * Every distributed job (bench lookup, infer, the MPI tests) has the same
 * shape: every rank opens a round engine collectively (a us_lookup, or the
 * model's distributed memory, coordinator/model/memory_dist.h), then
 *
 *   shard-only rank   serves rounds until every coordinator has finished;
 *   coordinator       does its work (which runs rounds), then finishes: the
 *                     STOP rounds that release the shards.
 *
 * us_job_run() is that decision, written once, with one policy for errors,
 * because a rank that leaves the round sequence early leaves the others
 * waiting in a collective forever (Open MPI 4.1 has no fault tolerance):
 *   - the coordinator's work failing with a local error (bad input, a batch
 *     refused) still finishes, so the shards stop and the job exits with the
 *     work's error;
 *   - the work failing in the transport (US_EMPI, US_EFABRIC), finish
 *     failing, or a shard's serve failing means the round sequence is broken:
 *     the whole job is aborted with the message (us_world_abort) rather than
 *     left to hang.
 * The engine is owned by the job from the call on and closed before it returns.
 */
#ifndef US_JOB_H
#define US_JOB_H

#include "coordinator/lookup/lookup.h"
#include "kernels/us_status.h"
#include "proto/world.h"

/* What a shard-only rank runs and a coordinator ends: a round engine. */
typedef struct us_round_engine_ops {
    const char *name;                          /* for messages: "lookup", "memory" */
    int  (*serve)(void *self, us_err *err);    /* rounds until all coordinators finish */
    int  (*finish)(void *self, us_err *err);   /* this coordinator's STOP rounds */
    void (*close)(void *self);                 /* NULL: nothing to free */
} us_round_engine_ops;

typedef struct us_round_engine {
    const us_round_engine_ops *ops;
    void *self;
} us_round_engine;

/* The coordinator's work: runs rounds on the engine it was given. Returns
 * US_OK or a US_E* code with *err set. */
typedef int (*us_job_work_fn)(void *arg, us_err *err);

/* A us_lookup as a round engine (us_lookup_serve / _finish / _close).
 * Returns: the engine (borrows L until the job closes it; cannot fail). */
us_round_engine us_lookup_engine(us_lookup *L);

/* Collective: every rank of world calls it with its engine (opened
 * collectively). Coordinators run work(arg) then finish; shard-only ranks
 * serve. The engine is closed on every path that returns.
 * Returns: US_OK (shard-only ranks: served to the end; coordinators: work
 * and finish succeeded), or the work's own US_E* code and message after a
 * clean finish. Does not return (us_world_abort) when serve or finish fails
 * or the work fails with US_EMPI / US_EFABRIC. */
int us_job_run(const us_world *w, us_round_engine engine, us_job_work_fn work, void *arg,
               us_err *err);

#endif
