/* infer_job.c — one `ultrashard infer` job (see infer_job.h). */
#include "coordinator/infer/infer_job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/infer/journal.h"
#include "coordinator/infer/prompts.h"
#include "coordinator/lookup/job.h"
#include "coordinator/model/memory_dist.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"

/* What "the same command" means for the journal: input bytes, model files,
 * decoding options. Weights are identified by size and mtime (hashing a
 * large weights file at every start would cost more than it protects). */
static int fingerprint(uint64_t *out, const char *model_dir, const char *store_dir,
                       const us_prompt_set *set,
                       const us_model *m, const us_infer_opts *o, uint32_t default_max_tokens,
                       us_err *err)
{
    char path[4096], opts[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/weights.safetensors", model_dir);
    if (stat(path, &st) != 0)
        return us_err_set(err, US_EIO, "%s: stat failed", path);
    char *cfg = us_model_config_to_json(&m->cfg);
    if (cfg == NULL)
        return us_err_set(err, US_ENOMEM, "fingerprint: out of memory");
    uint64_t h = us_fnv1a64(US_FNV1A64_INIT, &set->file_hash, sizeof set->file_hash);
    h = us_fnv1a64(h, cfg, strlen(cfg));
    free(cfg);
    int64_t w[3] = { (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec };
    h = us_fnv1a64(h, w, sizeof w);
    int n = snprintf(opts, sizeof opts, "t=%.9g p=%.9g seed=%" PRIu64 " max=%u",
                     (double)o->sampling.temperature, (double)o->sampling.top_p, o->seed,
                     default_max_tokens);
    h = us_fnv1a64(h, opts, (size_t)n);
    if (o->sessions_dir != NULL)
        h = us_fnv1a64(h, o->sessions_dir, strlen(o->sessions_dir) + 1);
    if (store_dir != NULL)
        h = us_fnv1a64(h, store_dir, strlen(store_dir) + 1);
    *out = h;
    return US_OK;
}

/* The coordinator's work: what it decodes and where the values come from
 * (dist: the shard ranks; NULL: this process). */
typedef struct infer_work {
    const us_infer_job_opts *o;
    us_memory_dist *dist;
} infer_work;

static void print_done(const us_infer_stats *st, const us_model *m)
{
    printf("{\"event\":\"infer_done\",\"sequences\":%zu,\"resumed\":%zu,\"finished\":%zu,"
           "\"prompt_tokens\":%" PRIu64 ",\"generated_tokens\":%" PRIu64 ",\"steps\":%" PRIu64
           ",\"seconds\":%.3f,\"generated_tokens_per_s\":%.1f,\"state_bytes\":%zu,"
           "\"workspace_bytes\":%zu,\"params_bytes\":%" PRIu64 "}\n",
           st->sequences, st->resumed, st->finished, st->prompt_tokens, st->generated_tokens,
           st->steps, st->seconds, st->seconds > 0 ? st->generated_tokens / st->seconds : 0.0,
           st->state_bytes, st->workspace_bytes, m->n_params * 4);
}

/* Every line that continues a session needs a sessions directory. */
static int check_sessions(const us_prompt_set *set, const us_infer_job_opts *jo, us_err *err)
{
    for (size_t i = 0; i < set->count && jo->infer.sessions_dir == NULL; i++)
        if (set->items[i].session != NULL)
            return us_err_set(err, US_EINVAL, "%s:%zu: line continues session \"%s\" but no "
                              "--sessions DIR was given", jo->input, set->items[i].line,
                              set->items[i].session);
    return US_OK;
}

/* The coordinator's job: prompts, model, journal, decoding. */
static int infer_coordinate(void *arg, us_err *err)
{
    const infer_work *iw = arg;
    const us_infer_job_opts *jo = iw->o;
    us_infer_opts o = jo->infer;
    us_session_store sessions;
    if (o.sessions_dir != NULL) {
        if (iw->dist != NULL)
            us_memory_dist_session_store(iw->dist, &sessions);
        else
            us_session_store_dir(&sessions, o.sessions_dir);
        o.sessions = &sessions;
    }
    us_prompt_set set = {0};
    us_model m = {0};
    us_value_tables vt = {0};
    us_model_store ms = {0};
    us_memory_backend be;
    us_journal j = {0};
    us_infer_stats st;
    uint64_t fp = 0;
    int rc;
    if ((rc = us_prompts_load(&set, jo->input, jo->max_tokens, jo->max_prompt_bytes, err)) !=
            US_OK ||
        (rc = check_sessions(&set, jo, err)) != US_OK ||
        (rc = us_model_load(&m, jo->model_dir, err)) != US_OK)
        goto fail;
    if (iw->dist != NULL) {
        us_memory_dist_backend(iw->dist, &be);
    } else if (jo->store_dir != NULL) {
        if ((rc = us_model_store_open(&ms, jo->store_dir, &m.cfg, err)) != US_OK)
            goto fail;
        us_model_store_backend(&ms, &be);
    } else {
        if ((rc = us_value_tables_load(&vt, jo->model_dir, &m.cfg, err)) != US_OK)
            goto fail;
        us_value_tables_backend(&vt, &be);
    }
    if ((rc = us_model_set_backend(&m, &be, err)) != US_OK ||
        (rc = fingerprint(&fp, jo->model_dir, jo->store_dir, &set, &m, &o, jo->max_tokens,
                          err)) != US_OK ||
        (rc = us_journal_open(&j, jo->output, &set, fp, err)) != US_OK)
        goto fail;
    o.job_fingerprint = fp;
    if ((rc = us_infer_run(&m, &set, &j, &o, &st, err)) == US_OK)
        print_done(&st, &m);
    us_journal_close(&j);
fail:
    us_value_tables_free(&vt);
    us_model_store_close(&ms);
    us_model_free(&m);
    us_prompts_free(&set);
    return rc;
}

/* Collective: every rank reads the model config (for the table count and
 * lookup sizes) and opens its part of the store. */
static int open_distributed(const us_world *w, us_memory_dist *dist,
                            const us_infer_job_opts *jo, us_err *err)
{
    if (jo->store_dir == NULL)
        return us_err_set(err, US_EINVAL, "running under mpirun with %d ranks needs --store "
                          "(the shard ranks serve its memory tables)", w->size);
    char path[4096];
    us_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", jo->model_dir);
    int rc = us_model_config_load(&cfg, path, err);
    if (rc != US_OK)
        return rc;
    us_memory_dist_opts dopts = {
        .transport = jo->transport, .mode = jo->lookup_mode,
        .max_tokens = (uint32_t)jo->infer.batch_tokens,
        .k = cfg.memory.heads * cfg.memory.knn, .n_groups = cfg.memory.ive_groups,
        .n_threads = 1, .sessions_dir = jo->infer.sessions_dir };
    return us_memory_dist_open(dist, w, jo->store_dir, us_model_config_memory_layers(&cfg),
                               &dopts, err);
}

int us_infer_job_run(const us_infer_job_opts *o, int *argc, char ***argv, us_err *err)
{
    infer_work iw = { .o = o, .dist = NULL };
    if (!us_world_detect_mpirun())
        return infer_coordinate(&iw, err);
    us_world w;
    int rc = us_world_init(&w, argc, argv, NULL, err);
    if (rc != US_OK)
        return rc;
    if (w.size == 1) {
        rc = infer_coordinate(&iw, err);
    } else {
        us_memory_dist dist;
        if ((rc = open_distributed(&w, &dist, o, err)) == US_OK) {
            iw.dist = &dist;
            rc = us_job_run(&w, us_memory_dist_engine(&dist), infer_coordinate, &iw, err);
        }
    }
    us_world_finalize(&w);
    return rc;
}
