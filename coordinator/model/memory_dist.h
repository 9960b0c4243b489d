/*
 * memory_dist.h — the model's memory layers served by shard ranks.
 *
 * A us_memory_backend (memory_backend.h) whose lookups are distributed
 * lookups (lookup.h) over a store opened per shard: each shard rank maps only
 * its own shard files (store.h, mmap: no scan at start), each memory table t
 * is the store table "table_<t>" (model_store.h), and a coordinator's lookup
 * of table t is one collective round of that table's us_lookup.
 *
 * Lockstep protocol. Rounds are collective, and a shard-only rank does not
 * run the model, so every rank must agree on which table each round is for:
 *   - a forward pass of the model looks up its memory tables in table order
 *     0..n_tables-1, exactly once each (memlayer.c; the blocking `lookup`
 *     entry is used, never two lookups in flight on the one transport);
 *   - shard-only ranks (us_memory_dist_serve) run rounds in the same cyclic
 *     order, table 0, 1, ..., n-1, 0, 1, ...;
 *   - when a forward pass stops early (an error in a layer), the coordinator
 *     completes the cycle with empty rounds (us_memory_dist_sync) before
 *     anything else, so the next round is again table 0 on every rank;
 *   - every cycle starts with a control exchange on a communicator of its
 *     own (an allgather of one ControlMessage per coordinator, ultrashard.proto,
 *     framed by proto/control.h), so every rank knows what each coordinator
 *     does in the cycle: CYCLE (it runs a forward pass), SESSION_SAVE /
 *     SESSION_LOAD (a session state goes to or comes from its owner shard,
 *     point to point), IDLE (nothing, more later) or STOP (it is done);
 *   - then, on every rank: the session operations, in coordinator order
 *     (each transfer involves its coordinator and the owner only, and every
 *     rank walks them in the same order, so none waits on a third rank);
 *     then, if any coordinator sent CYCLE, one round per table in table
 *     order, in which the others pass empty batches; when all sent STOP,
 *     each table's STOP round follows instead, which ends the shards' serve
 *     loop. A coordinator with nothing left to do finishes
 *     (us_memory_dist_finish): it says STOP and joins the others' cycles
 *     with empty rounds until every coordinator has said STOP.
 *
 * Sessions (shard/session.h) live on their owner shard: owner =
 * us_session_owner(id, placement seed of table 0, shards); that rank keeps
 * them as versioned files in its sessions directory, so a session survives
 * the job and is found again by any later job with the same shard count.
 * Any coordinator may save and load sessions; the owner answers the
 * coordinator that asked.
 */
#ifndef US_MEMORY_DIST_H
#define US_MEMORY_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/lookup/job.h"
#include "coordinator/lookup/lookup.h"
#include "coordinator/model/memory_backend.h"
#include "kernels/us_status.h"
#include "proto/control.h"
#include "proto/transport.h"
#include "proto/world.h"
#include "shard/session.h"
#include "shard/store.h"

typedef struct us_memory_dist_opts {
    const char    *transport;   /* "mpi" (default) or "fabric" */
    us_lookup_mode mode;        /* AUTO, PUSH or PULL */
    uint32_t max_tokens;        /* tokens per forward pass (infer's batch_tokens) */
    uint32_t k;                 /* pairs per token: heads * knn */
    uint32_t n_groups;          /* IVE groups */
    uint64_t cache_bytes;       /* coordinator hot-row cache; 0 = off */
    int      n_threads;         /* gather threads on shards */
    const char *sessions_dir;   /* shard ranks keep owned sessions here; NULL = none */
    double   scrub_mb_per_s;    /* shard ranks re-check their blocks' CRCs while idle
                                 * between cycles, at most this many MB/s; 0 = off */
} us_memory_dist_opts;

typedef struct us_memory_dist {
    const us_world *world;      /* borrowed */
    us_transport  **transports; /* [n_tables]: one each, so a table's one-sided
                                   reads (fabric pull) see only its blocks */
    us_store       *store;      /* shard ranks: this shard's files; else NULL */
    us_rows_view   *views;      /* [n_tables] shard ranks: borrowed by the lookups */
    us_lookup     **tables;     /* [n_tables] */
    us_table_info  *info;       /* [n_tables] */
    uint32_t        n_tables;
    uint32_t        next_table; /* table of the next round in the cycle */
    bool            finished;
    MPI_Comm        ctl_comm;   /* control exchanges and session transfers */
    uint8_t        *ctl_frames; /* [n_coordinators][US_CONTROL_FRAME_BYTES] */
    us_control_msg *ctl_msgs;   /* [n_coordinators]: the last exchange, decoded */
    int            *ctl_counts, *ctl_displs;   /* [world size]: the exchange's layout */
    const char     *sessions_dir;
    uint64_t        session_seed;
    double          scrub_bytes_per_s;   /* 0 = no scrub */
    double          scrub_start_s;       /* MPI_Wtime of the open */
    us_scrub_report scrub;               /* summed over every scrub step */
    uint64_t        scrub_passes;        /* full passes over the local blocks */
} us_memory_dist;

/* Collective over world. Opens the transport, the store (shard ranks) and
 * one lookup per memory table. Every rank learns whether all opened their
 * part, so one rank's failure does not leave the others waiting.
 * Returns: US_OK; US_EINVAL when the store's shard count is not the job's
 * shard count (naming both);
 * US_ENOTFOUND for a missing table; US_EUNSUPP for a synthetic table;
 * US_EIO / US_ECORRUPT / US_EVERSION from the manifest or this shard's files
 * (and US_EIO on the other ranks, "another rank could not open"); US_EMPI /
 * US_EFABRIC / US_ENOMEM. *d is closed on error. */
int us_memory_dist_open(us_memory_dist *d, const us_world *world, const char *store_dir,
                        uint32_t n_tables, const us_memory_dist_opts *opts, us_err *err);

/* Coordinator: the backend to attach to the model (borrows d). Its lookup
 * returns US_ERANGE for a table the store does not serve, else as
 * us_lookup_run. Returns: nothing (cannot fail). */
void us_memory_dist_backend(us_memory_dist *d, us_memory_backend *backend);

/* Coordinator: sessions kept by their owner shards (borrows d). Save and
 * load return the owner's error code and message (e.g. US_ENOTFOUND, US_EINVAL
 * for an owner without a sessions directory), US_EPROTO / US_EVERSION for a
 * bad control reply, US_EMPI for a failed transfer. Returns: nothing. */
void us_memory_dist_session_store(us_memory_dist *d, us_session_store *store);

/* Coordinator: empty rounds up to the end of the current cycle.
 * Returns: US_OK; as us_lookup_run for a failed round; US_EMPI when the
 * control exchange fails. */
int us_memory_dist_sync(us_memory_dist *d, us_err *err);

/* Coordinator with nothing to look up now but more to do later (e.g. waiting
 * for other coordinators' results): sync, then one cycle saying IDLE, taking
 * part in the others' session operations (as owner) and rounds.
 * Returns: US_OK; US_EMPI / US_EFABRIC / US_ENOMEM / US_EPROTO from a round,
 * a session transfer or the control exchange (abort the job). */
int us_memory_dist_idle(us_memory_dist *d, us_err *err);

/* Coordinator: sync, then say STOP and take part in the other coordinators'
 * cycles until all have said STOP, then STOP every table (collective with
 * the shards). A second call does nothing.
 * Returns: US_OK; US_EMPI / US_EFABRIC / US_ENOMEM / US_EPROTO from a round,
 * a session transfer or the control exchange (abort the job: shards may be
 * waiting). */
int us_memory_dist_finish(us_memory_dist *d, us_err *err);

/* Shard-only ranks: serve cycles until every coordinator has finished.
 * Returns: US_OK after STOP; US_EINVAL on a coordinator rank; US_EPROTO /
 * US_EVERSION for a control message that does not decode (proto/control.h);
 * US_EMPI / US_EFABRIC / US_ENOMEM from a round or a session transfer (the
 * job cannot go on). A session operation that fails on this owner is answered
 * to the coordinator that asked with its error, and serving goes on. */
int us_memory_dist_serve(us_memory_dist *d, us_err *err);

/* d as the round engine of a job (coordinator/lookup/job.h): serve, finish
 * and close are the calls below; the job closes d.
 * Returns: the engine (borrows d; cannot fail). */
us_round_engine us_memory_dist_engine(us_memory_dist *d);

/* Frees everything (not collective). Returns: nothing. */
void us_memory_dist_close(us_memory_dist *d);

#endif
