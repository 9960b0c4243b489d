/*
 * infer_multi.h — one `infer` job decoded by several coordinator ranks.
 *
 * With --coordinators C, coordinator c decodes the prompts whose input index
 * is c modulo C (a pure function of the input, so a rerun splits the same
 * way), each with its own continuous batching; the shard ranks serve all of
 * them in lockstep cycles (coordinator/model/memory_dist.h). A sequence's
 * output does not depend on who decodes it: its sampling stream is seeded
 * by (seed, id) and its forward pass does not mix with its batch neighbours.
 *
 * The output keeps one writer, so OUT, OUT.journal and OUT.lock behave as
 * with one coordinator (journal.h): coordinator 0 opens the journal, tells
 * the others which sequences are already done, and records every finished
 * line — its own directly, the others' as they arrive (point to point on a
 * communicator of the coordinators; each line is sent the moment it is
 * finished, so what is journaled after a kill -9 is what one coordinator
 * would have journaled, give or take lines in flight). A session line is
 * saved to its owner shard by the coordinator that decodes it before its
 * line is sent: the exactly-once rule of infer_session.h still holds.
 *
 * When coordinator 0 runs out of work it keeps taking lines, joining the
 * others' cycles with IDLE, until every other coordinator has sent its end
 * message (its result and counters); then every coordinator finishes.
 */
#ifndef US_INFER_MULTI_H
#define US_INFER_MULTI_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/infer/infer.h"
#include "coordinator/infer/journal.h"
#include "coordinator/model/memory_dist.h"
#include "kernels/us_status.h"
#include "proto/world.h"

typedef struct us_infer_multi {
    MPI_Comm comm;            /* the coordinators; owned */
    int index, count;         /* this coordinator, all coordinators */
    us_journal *j;            /* coordinator 0: the journal (borrowed) */
    uint8_t *done;            /* [n] others: finished before this job started */
    size_t n;
    MPI_Request *reqs;        /* others: lines in flight to coordinator 0 */
    uint8_t **bufs;           /* [n_pending] their bytes, freed on completion */
    size_t n_pending, cap_pending;
    int ends;                 /* coordinator 0: end messages received */
    size_t taken;             /* coordinator 0: others' lines not yet counted */
    us_infer_stats others;    /* coordinator 0: the others' counters, summed */
    int write_rc, other_rc;   /* coordinator 0: first journal / other error */
    us_err write_err, other_err;
} us_infer_multi;

/* Collective over the coordinators of w (not the shards). start_rc is this
 * coordinator's result so far (prompts, model; coordinator 0: the journal,
 * j, NULL elsewhere); every coordinator learns whether all started, and the
 * others receive the set of finished sequences from coordinator 0.
 * Returns: US_OK; start_rc (with *err as the caller set it) when this
 * coordinator failed; US_EIO "another coordinator could not start" when one
 * did; US_EINVAL when coordinators read inputs of different sizes; US_EMPI;
 * US_ENOMEM. *mc can be closed on every path. */
int us_infer_multi_open(us_infer_multi *mc, const us_world *w, us_journal *j, size_t n,
                        int start_rc, us_err *err);

/* The sink of this coordinator's us_infer_run (borrows mc): coordinator 0's
 * records to the journal and takes the others' lines when polled; the
 * others' send each line to coordinator 0.
 * Returns: nothing (cannot fail). */
void us_infer_multi_sink(us_infer_multi *mc, us_infer_sink *sink);

/* After us_infer_run returned run_rc (message in *run_err): the others send
 * their end message; coordinator 0 takes lines, idling on d between, until
 * every other coordinator has ended, and adds their counters into *st.
 * Returns: coordinator 0: run_rc, else the first journal error on another's
 * line, else the first other coordinator's error ("coordinator C: ...");
 * others: run_rc. US_EMPI / US_EFABRIC / US_EPROTO from an idle cycle or a
 * transfer (the job cannot go on). */
int us_infer_multi_end(us_infer_multi *mc, us_memory_dist *d, int run_rc, const us_err *run_err,
                       us_infer_stats *st, us_err *err);

/* Waits for this coordinator's lines in flight (call after the memory
 * finished: coordinator 0 takes them before it finishes) and frees mc.
 * Returns: nothing. */
void us_infer_multi_close(us_infer_multi *mc);

#endif
