/* infer_job.c — one `ultrashard infer` job (see infer_job.h). */
#include "coordinator/infer/infer_job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/infer/infer_multi.h"
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
    const us_world *world;     /* NULL for a single process */
    us_memory_dist *dist;
} infer_work;

/* What one coordinator holds for the job. */
typedef struct job_state {
    us_infer_opts o;
    us_session_store sessions;
    us_prompt_set set;
    us_model m;
    us_value_tables vt;
    us_model_store ms;
    us_journal j;
    uint64_t fp;
} job_state;

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

/* Prompts, model, its memory backend and the job's fingerprint. */
static int load_job(const infer_work *iw, job_state *js, us_err *err)
{
    const us_infer_job_opts *jo = iw->o;
    js->o = jo->infer;
    if (js->o.sessions_dir != NULL) {
        if (iw->dist != NULL)
            us_memory_dist_session_store(iw->dist, &js->sessions);
        else
            us_session_store_dir(&js->sessions, js->o.sessions_dir);
        js->o.sessions = &js->sessions;
    }
    us_memory_backend be;
    int rc;
    if ((rc = us_prompts_load(&js->set, jo->input, jo->max_tokens, jo->max_prompt_bytes,
                              err)) != US_OK ||
        (rc = check_sessions(&js->set, jo, err)) != US_OK ||
        (rc = us_model_load(&js->m, jo->model_dir, err)) != US_OK)
        return rc;
    if (iw->dist != NULL) {
        us_memory_dist_backend(iw->dist, &be);
    } else if (jo->store_dir != NULL) {
        if ((rc = us_model_store_open(&js->ms, jo->store_dir, &js->m.cfg, err)) != US_OK)
            return rc;
        us_model_store_backend(&js->ms, &be);
    } else {
        if ((rc = us_value_tables_load(&js->vt, jo->model_dir, &js->m.cfg, err)) != US_OK)
            return rc;
        us_value_tables_backend(&js->vt, &be);
    }
    if ((rc = us_model_set_backend(&js->m, &be, err)) != US_OK ||
        (rc = fingerprint(&js->fp, jo->model_dir, jo->store_dir, &js->set, &js->m, &js->o,
                          jo->max_tokens, err)) != US_OK)
        return rc;
    js->o.job_fingerprint = js->fp;
    return US_OK;
}

static void free_job(job_state *js)
{
    us_value_tables_free(&js->vt);
    us_model_store_close(&js->ms);
    us_model_free(&js->m);
    us_prompts_free(&js->set);
}

/* One coordinator: it writes the journal and decodes everything. */
static int run_single(const infer_work *iw, job_state *js, us_err *err)
{
    us_infer_stats st;
    us_infer_sink sink;
    int rc = us_journal_open(&js->j, iw->o->output, &js->set, js->fp, err);
    if (rc != US_OK)
        return rc;
    us_infer_journal_sink(&js->j, &sink);
    if ((rc = us_infer_run(&js->m, &js->set, &sink, &js->o, &st, err)) == US_OK)
        print_done(&st, &js->m);
    us_journal_close(&js->j);
    return rc;
}

/* One of several coordinators (infer_multi.h): its part of the prompts;
 * coordinator 0 writes. start_rc is load_job's result (all must agree). */
static int run_multi(const infer_work *iw, job_state *js, int start_rc, us_err *err)
{
    const us_world *w = iw->world;
    bool writer = w->coordinator_index == 0, journal_open = false;
    if (start_rc == US_OK && writer) {
        start_rc = us_journal_open(&js->j, iw->o->output, &js->set, js->fp, err);
        journal_open = start_rc == US_OK;
    }
    us_infer_multi mc;
    int rc = us_infer_multi_open(&mc, w, journal_open ? &js->j : NULL, js->set.count, start_rc,
                                 err);
    if (rc == US_OK) {
        us_infer_sink sink;
        us_infer_stats st;
        us_err run_err = {0};
        us_infer_multi_sink(&mc, &sink);
        js->o.part_index = (size_t)w->coordinator_index;
        js->o.part_count = (size_t)w->n_coordinators;
        js->o.progress = js->o.progress && writer;
        int run_rc = us_infer_run(&js->m, &js->set, &sink, &js->o, &st, &run_err);
        rc = us_infer_multi_end(&mc, iw->dist, run_rc, &run_err, &st, err);
        if (rc == US_OK && writer)
            print_done(&st, &js->m);
    }
    /* Lines still in flight to coordinator 0 complete while it takes them:
     * finish first (coordinator 0 finishes only once it has them all). */
    us_err fin_err = {0};
    int fin_rc = rc == US_EMPI || rc == US_EFABRIC ? US_OK
                                                   : us_memory_dist_finish(iw->dist, &fin_err);
    us_infer_multi_close(&mc);
    if (journal_open)
        us_journal_close(&js->j);
    if (fin_rc != US_OK) {
        if (err != NULL)
            *err = fin_err;
        return fin_rc;
    }
    return rc;
}

/* The coordinator's job: prompts, model, journal, decoding. */
static int infer_coordinate(void *arg, us_err *err)
{
    const infer_work *iw = arg;
    job_state js = {0};
    int rc = load_job(iw, &js, err);
    if (iw->world != NULL && iw->world->n_coordinators > 1)
        rc = run_multi(iw, &js, rc, err);
    else if (rc == US_OK)
        rc = run_single(iw, &js, err);
    free_job(&js);
    return rc;
}

int us_infer_job_open_dist(const us_world *w, us_memory_dist *dist,
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
        .n_threads = 1, .sessions_dir = jo->infer.sessions_dir,
        .scrub_mb_per_s = jo->scrub_mb_per_s };
    return us_memory_dist_open(dist, w, jo->store_dir, us_model_config_memory_layers(&cfg),
                               &dopts, err);
}

int us_infer_job_run(const us_infer_job_opts *o, int *argc, char ***argv, us_err *err)
{
    infer_work iw = { .o = o, .world = NULL, .dist = NULL };
    if (!us_world_detect_mpirun()) {
        if (o->coordinators > 1)
            return us_err_set(err, US_EINVAL, "--coordinators %d needs an mpirun job of more "
                              "than %d ranks (the rest serve the store)", o->coordinators,
                              o->coordinators);
        return infer_coordinate(&iw, err);
    }
    us_world w;
    us_world_opts wo = { .coordinators = o->coordinators };
    int rc = us_world_init(&w, argc, argv, &wo, err);
    if (rc != US_OK)
        return rc;
    if (w.size == 1) {
        rc = infer_coordinate(&iw, err);
    } else {
        us_memory_dist dist;
        if ((rc = us_infer_job_open_dist(&w, &dist, o, err)) == US_OK) {
            iw.world = &w;
            iw.dist = &dist;
            rc = us_job_run(&w, us_memory_dist_engine(&dist), infer_coordinate, &iw, err);
        }
    }
    us_world_finalize(&w);
    return rc;
}
