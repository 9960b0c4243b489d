/*
 * pipe.h — several lookup batches in flight per coordinator.
 *
 * One us_lookup has one round in flight: while the shards gather batch n
 * its coordinator waits, and while the coordinator routes and merges the
 * shards wait. A pipe opens `depth` lookups of the same table, each on its
 * own transport (its own communicator: their exchanges never match each
 * other's), and uses them round-robin, so the coordinator routes batch n+1
 * and merges batch n-1 while the shards gather batch n. On a box with fewer
 * cores than ranks that overlap is most of the gain (README, bench-lookup).
 *
 * Round order: every rank runs rounds on lookups 0, 1, ..., depth-1, 0, ...
 * Coordinators keep it by beginning batches round-robin and by padding
 * with idle rounds before their STOP rounds (finish); shard-only ranks serve
 * one round on each lookup in turn until all have stopped. Results come back
 * in batch order (us_lookup_pipe_end ends the oldest batch in flight).
 */
#ifndef US_PIPE_H
#define US_PIPE_H

#include <stdint.h>

#include "coordinator/lookup/job.h"
#include "coordinator/lookup/lookup.h"

#define US_PIPE_MAX_DEPTH 4

typedef struct us_lookup_pipe {
    int depth;
    us_lookup *L[US_PIPE_MAX_DEPTH];
    uint64_t begun, ended;        /* batches (coordinators: rounds begun/ended) */
} us_lookup_pipe;

/* Collective: opens depth lookups (us_lookup_open each, in order), lookup i
 * on t[i] (depth distinct transports). opts as for us_lookup_open.
 * Returns: US_OK; US_EINVAL for depth outside [1, US_PIPE_MAX_DEPTH];
 * errors of us_lookup_open (the lookups opened so far are closed). */
int us_lookup_pipe_open(us_lookup_pipe *p, int depth, const us_world *world,
                        us_transport *const *t, const us_table_info *table,
                        const us_rows_view *local, const us_lookup_opts *opts, us_err *err);

/* Coordinators: begins batch (borrowed until its end) on the next lookup.
 * Returns: as us_lookup_begin; US_EINVAL when depth batches are already in
 * flight. */
int us_lookup_pipe_begin(us_lookup_pipe *p, const us_lookup_batch *batch, us_err *err);

/* Coordinators: ends the oldest batch in flight into out.
 * Returns: as us_lookup_end; US_EINVAL when none is in flight. */
int us_lookup_pipe_end(us_lookup_pipe *p, float *out, us_err *err);

/* Returns: the lookup that ran (or runs) batch `i` of the pipe (borrowed). */
us_lookup *us_lookup_pipe_lookup(const us_lookup_pipe *p, uint64_t i);

/* The pipe as a round engine (coordinator/lookup/job.h): serve runs rounds
 * on each lookup in turn; finish ends batches still in flight (their
 * results dropped), pads to a whole turn and sends STOP rounds in turn;
 * close closes every lookup.
 * Returns: the engine (borrows p; cannot fail). */
us_round_engine us_lookup_pipe_engine(us_lookup_pipe *p);

#endif
