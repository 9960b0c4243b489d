/* eval.c — bits per byte of a model on a text file (see eval.h). */
#include "coordinator/infer/eval.h"

#include "coordinator/model/model_io.h"
#include "kernels/stats.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Returns: -ln softmax(logits)[target], in double. */
static double nll_of(const float *logits, size_t V, int target)
{
    double mx = logits[0];
    for (size_t v = 1; v < V; v++)
        mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0.0;
    for (size_t v = 0; v < V; v++)
        sum += exp((double)logits[v] - mx);
    return log(sum) + mx - (double)logits[target];
}

/* One evaluation's buffers: they do not grow with the file. */
typedef struct eval_bufs {
    us_workspace ws;
    us_seq_state state;
    int32_t *tokens;     /* [batch_tokens] inputs */
    uint8_t *bytes;      /* [batch_tokens] targets */
    float   *logits;     /* [batch_tokens][V] */
} eval_bufs;

static void bufs_free(eval_bufs *b)
{
    us_workspace_free(&b->ws);
    us_seq_state_free(&b->state);
    free(b->tokens);
    free(b->bytes);
    free(b->logits);
}

static int bufs_init(eval_bufs *b, const us_model_config *c, size_t T, us_err *err)
{
    memset(b, 0, sizeof *b);
    int rc;
    if ((rc = us_workspace_init(&b->ws, c, T, err)) != US_OK ||
        (rc = us_seq_state_init(&b->state, c, err)) != US_OK)
        return rc;
    b->tokens = malloc(T * sizeof *b->tokens);
    b->bytes = malloc(T);
    b->logits = malloc(T * c->vocab_size * sizeof *b->logits);
    if (b->tokens == NULL || b->bytes == NULL || b->logits == NULL)
        return us_err_set(err, US_ENOMEM, "eval: cannot allocate buffers for %zu tokens", T);
    return US_OK;
}

static void progress(const us_eval_result *r, uint64_t total, double t0)
{
    double dt = us_now_s() - t0;
    fprintf(stderr, "eval: %llu/%llu bytes (%.1f%%), %.0f tokens/s, %.4f bits/byte so far\n",
            (unsigned long long)r->bytes, (unsigned long long)total,
            total ? 100.0 * (double)r->bytes / (double)total : 100.0,
            dt > 0 ? (double)r->bytes / dt : 0.0, r->nll_nats / ((double)r->bytes * M_LN2));
}

/* Feeds the file chunk by chunk: inputs are the previous token (BOS first)
 * and the chunk's bytes but its last; targets are the chunk's bytes. */
static int stream(const us_model *m, const us_eval_opts *o, FILE *f, uint64_t total,
                  eval_bufs *b, us_eval_result *r, us_err *err)
{
    const size_t V = m->cfg.vocab_size, T = o->batch_tokens;
    int32_t prev = US_TOKEN_BOS;
    double t0 = us_now_s(), last = t0;
    size_t n;
    while ((n = fread(b->bytes, 1, T, f)) > 0) {
        b->tokens[0] = prev;
        for (size_t i = 1; i < n; i++)
            b->tokens[i] = b->bytes[i - 1];
        prev = b->bytes[n - 1];
        us_batch_item it = { &b->state, b->tokens, (uint32_t)n };
        int rc = us_model_forward(m, &b->ws, &it, 1, b->logits, false, err);
        if (rc != US_OK)
            return us_err_prefix(err, "eval: %s at byte %llu", o->text_path,
                                 (unsigned long long)r->bytes);
        for (size_t i = 0; i < n; i++)
            r->nll_nats += nll_of(b->logits + i * V, V, b->bytes[i]);
        r->bytes += n;
        if (o->progress && us_now_s() - last >= 5.0) {
            progress(r, total, t0);
            last = us_now_s();
        }
    }
    if (ferror(f))
        return us_err_set(err, US_EIO, "%s: read failed after %llu bytes", o->text_path,
                          (unsigned long long)r->bytes);
    r->seconds = us_now_s() - t0;
    return US_OK;
}

int us_eval_run(const us_model *m, const us_eval_opts *o, us_eval_result *r, us_err *err)
{
    memset(r, 0, sizeof *r);
    if (o->batch_tokens == 0)
        return us_err_set(err, US_EINVAL, "eval: batch_tokens must be >= 1");
    FILE *f = fopen(o->text_path, "rb");
    if (f == NULL)
        return us_err_set(err, errno == ENOENT ? US_ENOTFOUND : US_EIO, "%s: cannot open (%s)",
                          o->text_path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return us_err_set(err, US_EIO, "%s: not a regular file", o->text_path);
    }
    if (st.st_size == 0) {
        fclose(f);
        return us_err_set(err, US_EINVAL, "%s: empty file (nothing to score)", o->text_path);
    }
    eval_bufs b;
    int rc = bufs_init(&b, &m->cfg, o->batch_tokens, err);
    if (rc == US_OK)
        rc = stream(m, o, f, (uint64_t)st.st_size, &b, r, err);
    bufs_free(&b);
    fclose(f);
    if (rc != US_OK)
        return rc;
    if (r->bytes == 0)
        return us_err_set(err, US_EINVAL, "%s: empty file (nothing to score)", o->text_path);
    r->bits_per_byte = r->nll_nats / ((double)r->bytes * M_LN2);
    r->tokens_per_s = r->seconds > 0 ? (double)r->bytes / r->seconds : 0.0;
    return US_OK;
}

/* The coordinator's part of `ultrashard eval`. */
typedef struct eval_job {
    const us_eval_opts *o;
    bool json;
} eval_job;

static int eval_coordinate(const us_model_job_ctx *ctx, void *arg, us_err *err)
{
    const eval_job *ej = arg;
    us_model m;
    us_model_values values = {0};
    us_eval_result r;
    int rc = us_model_load(&m, ctx->opts->model_dir, err);
    if (rc != US_OK)
        return rc;
    if ((rc = us_model_values_attach(&values, &m, ctx, err)) == US_OK &&
        (rc = us_eval_run(&m, ej->o, &r, err)) == US_OK) {
        if (ej->json)
            printf("{\"event\":\"eval_done\",\"bits_per_byte\":%.9g,\"bytes\":%llu,"
                   "\"nll_nats\":%.9g,\"tokens_per_s\":%.1f,\"seconds\":%.3f}\n",
                   r.bits_per_byte, (unsigned long long)r.bytes, r.nll_nats, r.tokens_per_s,
                   r.seconds);
        else
            printf("%s: %.6f bits/byte over %llu bytes (nll %.6g nats), %.0f tokens/s\n",
                   ej->o->text_path, r.bits_per_byte, (unsigned long long)r.bytes,
                   r.nll_nats, r.tokens_per_s);
        fflush(stdout);
    }
    us_model_values_free(&values);
    us_model_free(&m);
    return rc;
}

int us_eval_job_run(const us_model_job_opts *job, const us_eval_opts *o, bool json,
                    int *argc, char ***argv, us_err *err)
{
    eval_job ej = { .o = o, .json = json };
    return us_model_job_run(job, argc, argv, eval_coordinate, &ej, err);
}
