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
 *   - every cycle starts with a control broadcast from the coordinator
 *     (on a communicator of its own; ControlMessage in ultrashard.proto,
 *     framed by proto/control.h): CYCLE (a forward pass follows),
 *     SESSION_SAVE / SESSION_LOAD (a session state goes to or comes from its
 *     owner shard, point to point), or STOP (each table's STOP round in
 *     table order follows, which ends the shards' serve loop).
 *
 * Sessions (shard/session.h) live on their owner shard: owner =
 * us_session_owner(id, placement seed of table 0, shards); that rank keeps
 * them as versioned files in its sessions directory, so a session survives
 * the job and is found again by any later job with the same shard count.
 * This job supports one coordinator (the default role layout, or
 * --all-roles with one coordinator); more are refused at open.
 */
#ifndef US_MEMORY_DIST_H
#define US_MEMORY_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/lookup/job.h"
#include "coordinator/lookup/lookup.h"
#include "coordinator/model/memory_backend.h"
#include "kernels/us_status.h"
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
    MPI_Comm        ctl_comm;   /* control broadcasts and session transfers */
    const char     *sessions_dir;
    uint64_t        session_seed;
} us_memory_dist;

/* Collective over world. Opens the transport, the store (shard ranks) and
 * one lookup per memory table. Every rank learns whether all opened their
 * part, so one rank's failure does not leave the others waiting.
 * Returns: US_OK; US_EINVAL when the store's shard count is not the job's
 * shard count (naming both) or the job has more than one coordinator;
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
 * control broadcast fails. */
int us_memory_dist_sync(us_memory_dist *d, us_err *err);

/* Coordinator: sync, then STOP every table (collective with the shards).
 * Returns: US_OK; US_EMPI / US_EFABRIC / US_ENOMEM from a round or the
 * control broadcast (abort the job: shards may be waiting). */
int us_memory_dist_finish(us_memory_dist *d, us_err *err);

/* Shard-only ranks: serve cycles until the coordinator finishes.
 * Returns: US_OK after STOP; US_EINVAL on a coordinator rank; US_EPROTO /
 * US_EVERSION for a control message that does not decode (proto/control.h);
 * US_EMPI / US_EFABRIC / US_ENOMEM from a round or a session transfer (the
 * job cannot go on). A session operation that fails on this owner is answered
 * to the coordinator with its error, and serving goes on. */
int us_memory_dist_serve(us_memory_dist *d, us_err *err);

/* d as the round engine of a job (coordinator/lookup/job.h): serve, finish
 * and close are the calls below; the job closes d.
 * Returns: the engine (borrows d; cannot fail). */
us_round_engine us_memory_dist_engine(us_memory_dist *d);

/* Frees everything (not collective). Returns: nothing. */
void us_memory_dist_close(us_memory_dist *d);

#endif
