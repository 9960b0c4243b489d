/*
 * model_logits.c — C logits of a model directory for tests/ref/model.py.
 *
 *   model_logits MODEL_DIR TOKENS.i32 OUT.f32 MODE
 *
 * Runs one sequence (raw little-endian int32 token ids) and writes the logits
 * of every position, f32 [T][V]. MODE picks how the tokens are fed, all of
 * which must give the same logits:
 *   prefill   segment-sized chunks
 *   decode    one token per step (KV cache inside the segment)
 *   batch     chunks of 3, in a batch with two other sequences (different
 *             tokens, different chunk phases) that must not disturb it
 *   whole     every token in one step (the forward walks the segments)
 *   span      chunks of 1.5 segments, crossing segment boundaries, in a
 *             batch with two others taking 2.5 segments and 1 token
 * Value tables come from MODEL_DIR/values (local backend), or, with
 * STORE_DIR, from a store served by the shard ranks of this MPI job
 * (memory_dist.h; run under mpirun: rank 0 computes, the others serve;
 * TRANSPORT "mpi" or "fabric", MODE_LOOKUP "auto", "push" or "pull").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/lookup/job.h"
#include "coordinator/model/memory_dist.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "proto/world.h"

static int fail(const us_err *err)
{
    fprintf(stderr, "model_logits: error: %s (%s)\n", err->msg, us_code_name(err->code));
    return 1;
}

#define MAX_TOKENS 4096

/* Largest step of any mode: whole (T) or span (L + L/2 + 2L + L/2 + 1). */
static size_t max_step_tokens(size_t T, size_t L)
{
    return (T > 5 * L ? T : 5 * L) + 1;
}

/* What the computing rank does (the job's coordinator work). */
typedef struct logits_job {
    us_model *m;
    const us_memory_backend *backend;
    const char *tokens_path, *out_path, *mode;
} logits_job;

static int compute_logits(void *arg, us_err *err)
{
    const logits_job *job = arg;
    us_model *mp = job->m;
    const char *mode = job->mode;
    int rc = us_model_set_backend(mp, job->backend, err);
    if (rc != US_OK)
        return rc;
    FILE *f = fopen(job->tokens_path, "rb");
    if (f == NULL)
        return us_err_set(err, US_EIO, "%s: cannot open", job->tokens_path);
    int32_t tokens[MAX_TOKENS];
    size_t T = fread(tokens, 4, MAX_TOKENS, f);
    fclose(f);
    const size_t V = mp->cfg.vocab_size, L = mp->cfg.segment_len;
    float *logits = malloc(T * V * sizeof(float));
    const size_t max_step = max_step_tokens(T, L);
    float *step = malloc(max_step * V * sizeof(float));
    us_seq_state s[3];
    us_workspace ws;
    if (logits == NULL || step == NULL)
        return us_err_set(err, US_ENOMEM, "logits of %zu tokens", T);
    if ((rc = us_workspace_init(&ws, &mp->cfg, max_step, err)) != US_OK)
        return rc;
    for (int i = 0; i < 3; i++)
        if ((rc = us_seq_state_init(&s[i], &mp->cfg, err)) != US_OK)
            return rc;
    int32_t other[2][MAX_TOKENS];
    for (size_t t = 0; t < T; t++) {
        other[0][t] = (int32_t)((tokens[t] * 7 + 3) % 256);
        other[1][t] = (int32_t)((t * 13 + 5) % 259);
    }
    size_t pos = 0, opos[2] = { 0, 0 };
    while (pos < T) {
        size_t room = L - s[0].seg_fill, n;
        if (strcmp(mode, "prefill") == 0)
            n = room;
        else if (strcmp(mode, "decode") == 0)
            n = 1;
        else if (strcmp(mode, "batch") == 0)
            n = 3 < room ? 3 : room;
        else if (strcmp(mode, "whole") == 0)
            n = T;
        else if (strcmp(mode, "span") == 0)
            n = L + L / 2;
        else
            return us_err_set(err, US_EINVAL, "unknown mode '%s'", mode);
        if (n > T - pos)
            n = T - pos;
        us_batch_item items[3] = { { &s[0], tokens + pos, (uint32_t)n } };
        size_t n_items = 1;
        bool spans = strcmp(mode, "span") == 0;
        if (strcmp(mode, "batch") == 0 || spans) {
            for (int o = 0; o < 2; o++) {
                size_t want = o == 0 ? 5 : 1, r = L - s[1 + o].seg_fill;
                size_t k = spans ? (o == 0 ? 2 * L + L / 2 : 1) : want < r ? want : r;
                if (opos[o] + k > T)
                    continue;
                items[n_items++] = (us_batch_item){ &s[1 + o], other[o] + opos[o], (uint32_t)k };
                opos[o] += k;
            }
        }
        if ((rc = us_model_forward(mp, &ws, items, n_items, step, false, err)) != US_OK)
            return rc;
        memcpy(logits + pos * V, step, n * V * sizeof(float));
        pos += n;
    }
    f = fopen(job->out_path, "wb");
    if (f == NULL || fwrite(logits, sizeof(float), T * V, f) != T * V || fclose(f) != 0)
        return us_err_set(err, US_EIO, "%s: cannot write", job->out_path);
    for (int i = 0; i < 3; i++)
        us_seq_state_free(&s[i]);
    us_workspace_free(&ws);
    free(step);
    free(logits);
    return US_OK;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 8) {
        fprintf(stderr, "usage: model_logits MODEL_DIR TOKENS.i32 OUT.f32 prefill|decode|batch "
                        "[STORE_DIR mpi|fabric auto|push|pull]\n");
        return 2;
    }
    us_err err = {0};
    us_model m;
    us_memory_backend be;
    if (us_model_load(&m, argv[1], &err) != US_OK)
        return fail(&err);
    logits_job job = { .m = &m, .backend = &be, .tokens_path = argv[2], .out_path = argv[3],
                       .mode = argv[4] };
    int rc;
    if (argc == 5) {
        us_value_tables vt = {0};
        if ((rc = us_value_tables_load(&vt, argv[1], &m.cfg, &err)) == US_OK) {
            us_value_tables_backend(&vt, &be);
            rc = compute_logits(&job, &err);
        }
        us_value_tables_free(&vt);
        us_model_free(&m);
        return rc == US_OK ? 0 : fail(&err);
    }
    us_world w;
    us_memory_dist dist;
    if (us_world_init(&w, &argc, &argv, NULL, &err) != US_OK)
        return fail(&err);
    us_memory_dist_opts o = {
        .transport = argv[6],
        .mode = strcmp(argv[7], "push") == 0 ? US_LOOKUP_PUSH :
                strcmp(argv[7], "pull") == 0 ? US_LOOKUP_PULL : US_LOOKUP_AUTO,
        .max_tokens = (uint32_t)max_step_tokens(MAX_TOKENS, m.cfg.segment_len),
        .k = us_model_config_lookup_pairs(&m.cfg),
        .n_groups = us_model_config_lookup_groups(&m.cfg), .n_threads = 1 };
    if (us_memory_dist_open(&dist, &w, argv[5], us_model_config_memory_layers(&m.cfg), &o,
                            &err) != US_OK)
        us_world_abort(&w, &err);
    us_memory_dist_backend(&dist, &be);
    rc = us_job_run(&w, us_memory_dist_engine(&dist), compute_logits, &job, &err);
    us_model_free(&m);
    us_world_finalize(&w);
    return rc == US_OK ? 0 : fail(&err);
}
