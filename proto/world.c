/* world.c — MPI start-up and role assignment (see world.h). */
#include "proto/world.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool us_world_detect_mpirun(void)
{
    static const char *const vars[] = {
        "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
        "MPI_LOCALNRANKS", "SLURM_STEP_ID",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]) != NULL)
            return true;
    return false;
}

int us_world_assign_roles(us_world *w, int rank, int size,
                          const us_world_opts *opts, us_err *err)
{
    us_world_opts none = {0};
    if (opts == NULL)
        opts = &none;
    if (size < 1 || rank < 0 || rank >= size)
        return us_err_set(err, US_EINVAL, "bad MPI rank %d of size %d", rank, size);
    int coords = opts->coordinators > 0 ? opts->coordinators : 1;
    if (opts->coordinators < 0)
        return us_err_set(err, US_EINVAL, "--coordinators must be >= 1, got %d",
                          opts->coordinators);

    w->rank = rank;
    w->size = size;
    if (size == 1 || opts->all_roles) {
        if (opts->coordinators > size)
            return us_err_set(err, US_EINVAL,
                              "--coordinators %d exceeds the %d ranks of this job",
                              opts->coordinators, size);
        w->n_coordinators = opts->all_roles ? (opts->coordinators > 0 ? coords : size) : 1;
        w->n_shards = size;
    } else {
        if (coords >= size)
            return us_err_set(err, US_EINVAL,
                              "--coordinators %d leaves no shard rank in a job of %d ranks "
                              "(start more ranks, or use --all-roles where the command "
                              "offers it)", coords, size);
        w->n_coordinators = coords;
        w->n_shards = size - coords;
    }
    w->shard_ranks = calloc((size_t)w->n_shards, sizeof *w->shard_ranks);
    w->coordinator_ranks = calloc((size_t)w->n_coordinators, sizeof *w->coordinator_ranks);
    if (w->shard_ranks == NULL || w->coordinator_ranks == NULL) {
        free(w->shard_ranks);
        free(w->coordinator_ranks);
        w->shard_ranks = w->coordinator_ranks = NULL;
        return us_err_set(err, US_ENOMEM, "role tables for %d ranks", size);
    }
    for (int c = 0; c < w->n_coordinators; c++)
        w->coordinator_ranks[c] = c;
    int first_shard = size - w->n_shards;
    for (int s = 0; s < w->n_shards; s++)
        w->shard_ranks[s] = first_shard + s;
    w->is_coordinator = rank < w->n_coordinators;
    w->is_shard = rank >= first_shard;
    w->coordinator_index = w->is_coordinator ? rank : -1;
    w->shard_index = w->is_shard ? rank - first_shard : -1;
    return US_OK;
}

/* Whether pid runs a launcher that forks ranks: only then is its death the
 * job's end (a rank under a shell or a debugger keeps running). */
static bool is_launcher(pid_t pid)
{
    static const char *const names[] = {
        "mpirun", "mpiexec", "orterun", "orted", "prterun", "prted", "slurmstepd",
        "hydra_pmi_proxy",
    };
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    if (fgets(comm, sizeof comm, f) == NULL)
        comm[0] = '\0';
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(comm, names[i]) == 0)
            return true;
    return false;
}

/* Polls rather than PR_SET_PDEATHSIG: that signal fires when the forking
 * *thread* of the parent exits, which a threaded launcher may do while the
 * job goes on. */
static void *launcher_watchdog(void *arg)
{
    pid_t launcher = (pid_t)(intptr_t)arg;
    struct timespec tick = { 0, US_WORLD_WATCHDOG_MS * 1000000L };
    for (;;) {
        nanosleep(&tick, NULL);
        if (getppid() != launcher)
            kill(getpid(), SIGKILL);    /* no flush, no more output */
    }
    return NULL;
}

static void start_watchdog(void)
{
    static bool started;
    pid_t parent = getppid();
    if (started || parent <= 1 || !is_launcher(parent))
        return;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    if (pthread_create(&th, &attr, launcher_watchdog, (void *)(intptr_t)parent) == 0)
        started = true;
    pthread_attr_destroy(&attr);
}

int us_world_init(us_world *w, int *argc, char ***argv,
                  const us_world_opts *opts, us_err *err)
{
    memset(w, 0, sizeof *w);
    w->comm = MPI_COMM_NULL;
    w->under_mpirun = us_world_detect_mpirun();
    if (!w->under_mpirun && opts != NULL && opts->require_mpirun)
        return us_err_set(err, US_EMPI,
                          "not started under mpirun; run e.g. `mpirun -n 4 %s ...`",
                          argv && *argv ? (*argv)[0] : "ultrashard");

    int rc, initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &w->thread_level);
        if (rc != MPI_SUCCESS)
            return us_err_set(err, US_EMPI, "MPI_Init_thread failed (code %d)", rc);
        w->mpi_owned = true;
    } else {
        MPI_Query_thread(&w->thread_level);
    }
    if (w->thread_level < MPI_THREAD_FUNNELED) {
        rc = us_err_set(err, US_EMPI,
                   "MPI library provides thread level %d, UltraShard needs "
                   "MPI_THREAD_FUNNELED (%d)", w->thread_level, MPI_THREAD_FUNNELED);
        goto fail_finalize;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &w->comm);
    MPI_Comm_set_errhandler(w->comm, MPI_ERRORS_RETURN);
    int rank, size;
    MPI_Comm_rank(w->comm, &rank);
    MPI_Comm_size(w->comm, &size);
    rc = us_world_assign_roles(w, rank, size, opts, err);
    if (rc != US_OK)
        goto fail_comm;
    if (w->under_mpirun)
        start_watchdog();
    return US_OK;

fail_comm:
    MPI_Comm_free(&w->comm);
fail_finalize:
    if (w->mpi_owned)
        MPI_Finalize();
    w->mpi_owned = false;
    return rc;
}

const char *us_world_role_name(const us_world *w)
{
    if (w->is_coordinator && w->is_shard)
        return "coordinator+shard";
    return w->is_coordinator ? "coordinator" : "shard";
}

void us_world_finalize(us_world *w)
{
    free(w->shard_ranks);
    free(w->coordinator_ranks);
    w->shard_ranks = w->coordinator_ranks = NULL;
    if (w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    if (w->mpi_owned) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized)
            MPI_Finalize();
        w->mpi_owned = false;
    }
}

int us_world_agree(const us_world *w, int rc, const char *what, us_err *err)
{
    if (w == NULL || w->comm == MPI_COMM_NULL || w->size <= 1)
        return rc;
    return us_comm_agree(w->comm, rc, what, err);
}

int us_comm_agree(MPI_Comm comm, int rc, const char *what, us_err *err)
{
    us_world wv = { .comm = comm };
    us_world *w = &wv;
    MPI_Comm_rank(comm, &w->rank);
    MPI_Comm_size(comm, &w->size);
    if (w->size <= 1)
        return rc;
    int *all = malloc((size_t)w->size * sizeof *all);
    if (all == NULL) {
        /* still enter a collective so no rank waits forever */
        int bad = rc != US_OK, any = 0;
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, w->comm);
        return rc != US_OK ? rc : any ? us_err_set(err, US_ENOMEM, "%s: rank %d could not "
                                                   "learn which rank failed", what, w->rank)
                                      : US_OK;
    }
    if (MPI_Allgather(&rc, 1, MPI_INT, all, 1, MPI_INT, w->comm) != MPI_SUCCESS) {
        free(all);
        return rc != US_OK ? rc : us_err_set(err, US_EMPI, "%s: rank %d: MPI_Allgather "
                                             "failed", what, w->rank);
    }
    if (rc != US_OK) {
        fprintf(stderr, "ultrashard: rank %d: %s: %s (%s)\n", w->rank, what,
                err && err->msg[0] ? err->msg : "unknown error", us_code_name(rc));
        fflush(stderr);
    }
    char list[256] = "";
    int n_failed = 0, first_code = US_OK;
    for (int r = 0; r < w->size; r++) {
        if (all[r] == US_OK)
            continue;
        if (n_failed++ == 0)
            first_code = all[r];
        size_t len = strlen(list);
        if (len + 16 < sizeof list)
            snprintf(list + len, sizeof list - len, "%s%d", n_failed > 1 ? ", " : "", r);
    }
    free(all);
    /* Rank 0 names the failing ranks before the barrier too: once a failing
     * rank exits, the launcher may kill rank 0 before its caller prints. */
    if (w->rank == 0 && rc == US_OK && n_failed > 0) {
        fprintf(stderr, "ultrashard: rank 0: %s aborted: rank%s %s failed\n", what,
                n_failed > 1 ? "s" : "", list);
        fflush(stderr);
    }
    MPI_Barrier(w->comm);
    if (n_failed == 0 || rc != US_OK)
        return rc;
    return us_err_set(err, first_code, "%s aborted: rank%s %s failed (see %s message above)",
                      what, n_failed > 1 ? "s" : "", list, n_failed > 1 ? "their" : "its");
}

void us_world_abort(const us_world *w, const us_err *err)
{
    fprintf(stderr, "ultrashard: rank %d: fatal: %s\n", w ? w->rank : -1,
            err ? err->msg : "unknown error");
    fflush(stderr);
    MPI_Abort(w && w->comm != MPI_COMM_NULL ? w->comm : MPI_COMM_WORLD, 1);
}
