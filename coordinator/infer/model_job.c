/* model_job.c — the model on coordinators, values local or on shards (see model_job.h). */
#include "coordinator/infer/model_job.h"

#include <stdio.h>
#include <string.h>

#include "coordinator/lookup/job.h"

/* The job's work with the context it runs in (us_job_work_fn shape). */
typedef struct job_call {
    us_model_job_ctx ctx;
    us_model_job_fn work;
    void *arg;
} job_call;

static int call_work(void *p, us_err *err)
{
    job_call *jc = p;
    return jc->work(&jc->ctx, jc->arg, err);
}

/* Collective: every rank reads the model config (for the table count and
 * lookup sizes) and opens its part of the store. */
static int open_distributed(const us_world *w, us_memory_dist *dist,
                            const us_model_job_opts *o, us_err *err)
{
    if (o->store_dir == NULL)
        return us_err_set(err, US_EINVAL, "running under mpirun with %d ranks needs --store "
                          "(the shard ranks serve its memory tables)", w->size);
    char path[4096];
    us_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", o->model_dir);
    int rc = us_model_config_load(&cfg, path, err);
    if (rc != US_OK)
        return rc;
    us_memory_dist_opts dopts = {
        .transport = o->transport, .mode = o->lookup_mode, .max_tokens = o->max_tokens,
        .k = us_model_config_lookup_pairs(&cfg),
        .n_groups = us_model_config_lookup_groups(&cfg),
        .n_threads = 1, .sessions_dir = o->sessions_dir,
        .scrub_mb_per_s = o->scrub_mb_per_s };
    return us_memory_dist_open(dist, w, o->store_dir, us_model_config_memory_layers(&cfg),
                               &dopts, err);
}

int us_model_job_run(const us_model_job_opts *o, int *argc, char ***argv,
                     us_model_job_fn work, void *arg, us_err *err)
{
    job_call jc = { .ctx = { .opts = o }, .work = work, .arg = arg };
    if (!us_world_detect_mpirun()) {
        if (o->coordinators > 1)
            return us_err_set(err, US_EINVAL, "--coordinators %d needs an mpirun job of more "
                              "than %d ranks (the rest serve the store)", o->coordinators,
                              o->coordinators);
        return call_work(&jc, err);
    }
    us_world w;
    us_world_opts wo = { .coordinators = o->coordinators };
    int rc = us_world_init(&w, argc, argv, &wo, err);
    if (rc != US_OK)
        return rc;
    if (w.size == 1) {
        rc = call_work(&jc, err);
    } else {
        us_memory_dist dist;
        if ((rc = open_distributed(&w, &dist, o, err)) == US_OK) {
            jc.ctx.world = &w;
            jc.ctx.dist = &dist;
            rc = us_job_run(&w, us_memory_dist_engine(&dist), call_work, &jc, err);
        }
    }
    us_world_finalize(&w);
    return rc;
}

int us_model_values_attach(us_model_values *v, us_model *m, const us_model_job_ctx *ctx,
                           us_err *err)
{
    us_memory_backend be;
    int rc;
    if (ctx->dist != NULL) {
        us_memory_dist_backend(ctx->dist, &be);
    } else if (ctx->opts->store_dir != NULL) {
        if ((rc = us_model_store_open(&v->ms, ctx->opts->store_dir, &m->cfg, err)) != US_OK)
            return rc;
        us_model_store_backend(&v->ms, &be);
    } else {
        if ((rc = us_value_tables_load(&v->vt, ctx->opts->model_dir, &m->cfg, err)) != US_OK)
            return rc;
        us_value_tables_backend(&v->vt, &be);
    }
    return us_model_set_backend(m, &be, err);
}

void us_model_values_free(us_model_values *v)
{
    us_value_tables_free(&v->vt);
    us_model_store_close(&v->ms);
}
