/*
 * model_job.h — a job that runs the model on one coordinator (or several),
 * with its memory tables in this process or on the shard ranks of an mpirun
 * job: what `ultrashard infer` and `ultrashard eval` share.
 *
 * Single process (no mpirun, or one rank): the work runs here and the model's
 * values come from DIR/values or a store opened in this process. Under mpirun
 * with N > 1 ranks every rank reads the model config (table count, lookup
 * pairs and groups per token), opens its part of the store collectively
 * (coordinator/model/memory_dist.h) and the job runs through us_job_run
 * (coordinator/lookup/job.h): coordinators run the work, shard-only ranks
 * serve their lookups until every coordinator has finished.
 *
 * The work attaches the values with us_model_values_attach, which picks the
 * backend from where the job runs (distributed, store, or DIR/values).
 */
#ifndef US_MODEL_JOB_H
#define US_MODEL_JOB_H

#include <stdint.h>

#include "coordinator/lookup/lookup.h"
#include "coordinator/model/memory_dist.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"
#include "kernels/us_status.h"
#include "proto/world.h"

typedef struct us_model_job_opts {
    const char *model_dir;       /* init-model's directory */
    const char *store_dir;       /* memory tables from a store; NULL = model_dir/values */
    const char *transport;       /* mpirun jobs: "mpi" or "fabric" */
    us_lookup_mode lookup_mode;  /* mpirun jobs: AUTO, PUSH or PULL */
    int coordinators;            /* mpirun jobs: ranks that run the work; 0 = 1 */
    double scrub_mb_per_s;       /* mpirun jobs: shards' idle-time CRC re-check rate */
    uint32_t max_tokens;         /* tokens per forward pass (lookup round size) */
    const char *sessions_dir;    /* shard ranks keep owned sessions here; NULL = none */
} us_model_job_opts;

/* Where the work runs: world and dist are NULL for a single process. */
typedef struct us_model_job_ctx {
    const us_model_job_opts *opts;
    const us_world *world;
    us_memory_dist *dist;
} us_model_job_ctx;

/* The coordinator's work. Returns US_OK or a US_E* code with *err set. */
typedef int (*us_model_job_fn)(const us_model_job_ctx *ctx, void *arg, us_err *err);

/* Runs work(arg) as described above (argc/argv as for MPI_Init).
 * Returns: US_OK; the work's error with its message; US_EINVAL for several
 * ranks without store_dir or more than one coordinator without mpirun; the
 * config's and the distributed open's errors (on every rank); US_EMPI when
 * MPI cannot start. Aborts the job when the shards' serving or the
 * coordinator's finish fails (us_job_run). */
int us_model_job_run(const us_model_job_opts *o, int *argc, char ***argv,
                     us_model_job_fn work, void *arg, us_err *err);

/* The values a coordinator's model reads, when they live in this process. */
typedef struct us_model_values {
    us_value_tables vt;
    us_model_store  ms;
} us_model_values;

/* Attaches m's value backend: the shard ranks (ctx->dist), a store opened
 * here (opts->store_dir) or model_dir/values. *v must be zeroed first.
 * Returns: US_OK; us_model_store_open's, us_value_tables_load's or
 * us_model_set_backend's error. */
int us_model_values_attach(us_model_values *v, us_model *m, const us_model_job_ctx *ctx,
                           us_err *err);
/* Returns: nothing; cannot fail (a zeroed or freed *v is fine). */
void us_model_values_free(us_model_values *v);

#endif
