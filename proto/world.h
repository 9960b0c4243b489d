/*
 * world.h — MPI start-up and rank roles.
 *
 * Every UltraShard job is one MPI job. us_world_init() starts MPI with the
 * thread level the transports need (MPI_THREAD_FUNNELED: only the main
 * thread calls MPI; kernels may use OpenMP threads in between), checks what
 * the library provides, and assigns each rank its roles:
 *
 *   default            rank 0 coordinator, ranks 1..n-1 shards
 *   coordinators = C   ranks 0..C-1 coordinators, the rest shards
 *   all_roles          every rank is both coordinator and shard
 *   one rank           rank 0 is both (a single-process run)
 *
 * Shards are numbered 0..S-1 in rank order (shard_index); placement maps a
 * block to a shard index, and us_world_shard_rank() maps it to a rank.
 * Not being started by mpirun is detected from the launcher's environment and
 * reported; the process then runs as a one-rank job (MPI singleton).
 *
 * Launcher death: when the parent process is the launcher (mpirun, orted,
 * srun's slurmstepd, ...), a watchdog thread polls the parent pid every
 * US_WORLD_WATCHDOG_MS and SIGKILLs the rank once the launcher is gone, so
 * no rank of a killed job goes on writing output files.
 *
 * Collective failures: a rank whose local step failed must not leave the
 * others waiting, and its message must reach the user before the job is
 * torn down (a rank that exits first makes mpirun kill the rest, which
 * could lose the one message that says what went wrong): see
 * us_world_agree.
 */
#ifndef US_WORLD_H
#define US_WORLD_H

#include <mpi.h>
#include <stdbool.h>

#include "kernels/us_status.h"

typedef struct us_world_opts {
    int  coordinators;   /* 0 = default (1) */
    bool all_roles;      /* every rank is coordinator and shard */
    bool require_mpirun; /* fail (instead of warn) when not under mpirun */
} us_world_opts;

typedef struct us_world {
    MPI_Comm comm;          /* dup of MPI_COMM_WORLD, owned */
    int  rank, size;
    int  thread_level;      /* provided MPI thread level */
    bool under_mpirun;
    bool is_coordinator, is_shard;
    int  n_coordinators, n_shards;
    int  coordinator_index; /* 0..C-1, or -1 */
    int  shard_index;       /* 0..S-1, or -1 */
    int *shard_ranks;       /* [n_shards]: shard index -> rank */
    int *coordinator_ranks; /* [n_coordinators] */
    bool mpi_owned;         /* we called MPI_Init and must finalize */
} us_world;

/* Starts MPI if needed and fills *w.
 * Returns: US_OK; US_EINVAL for role options this job size cannot satisfy
 * (naming them); US_EMPI when MPI fails to start, lacks the thread support,
 * or opts->require_mpirun is set without mpirun; US_ENOMEM for role tables. */
int us_world_init(us_world *w, int *argc, char ***argv,
                  const us_world_opts *opts, us_err *err);

/* Computes roles for (rank, size, opts) without MPI; used by init and tests.
 * Allocates w->shard_ranks / coordinator_ranks.
 * Returns: US_OK; US_EINVAL for a bad rank/size or role options (too many
 * coordinators, no shard rank left); US_ENOMEM. */
int us_world_assign_roles(us_world *w, int rank, int size,
                          const us_world_opts *opts, us_err *err);

/* Returns: the rank of shard shard_index (0 <= shard_index < n_shards). */
static inline int us_world_shard_rank(const us_world *w, int shard_index)
{
    return w->shard_ranks[shard_index];
}

/* Returns: true when the environment shows an mpirun/orterun/srun launcher. */
bool us_world_detect_mpirun(void);

/* Returns: "coordinator", "shard" or "coordinator+shard" (static). */
const char *us_world_role_name(const us_world *w);

/* Frees role tables, frees the communicator and finalizes MPI if we started it.
 * Returns: nothing. */
void us_world_finalize(us_world *w);

/* Collective (every rank calls it with its local result rc). All ranks
 * learn whether any failed; every failing rank writes its own message
 * ("ultrashard: rank R: WHAT: MSG (CODE)") to stderr and flushes it, and
 * rank 0 (when it did not fail) names the failing ranks ("ultrashard: rank 0:
 * WHAT aborted: rank 2 failed"); then all pass a barrier, so those lines are
 * out before any rank returns.
 * Returns: US_OK when every rank succeeded; a failing rank gets its own rc
 * (err unchanged); the others get the first failing rank's code with *err
 * naming WHAT and the failing ranks ("WHAT aborted: ranks 2, 3 failed (see
 * their messages above)"). US_EMPI if the collective itself failed. */
int us_world_agree(const us_world *w, int rc, const char *what, us_err *err);
/* The same over any communicator (import runs on a bare one).
 * Returns: as us_world_agree. */
int us_comm_agree(MPI_Comm comm, int rc, const char *what, us_err *err);

#define US_WORLD_WATCHDOG_MS 50

/* Aborts the whole job (all ranks) with an error message: for unrecoverable
 * errors on one rank that would otherwise leave the others waiting forever.
 * Returns: never (MPI_Abort). */
void us_world_abort(const us_world *w, const us_err *err);

#endif
