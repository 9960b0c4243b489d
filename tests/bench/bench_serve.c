/*
 * bench_serve.c — load generator for `ultrashard serve` (make bench-serve,
 * tests/bench/serve.sh; tests/bench/serve_restart.sh uses --until-ok).
 *
 *   bench_serve --connect HOST:PORT [--token-file F] --clients N
 *               [--requests R] [--seconds S] [--label L]
 *     lookup   --table NAME --values V.npy [--tokens T] [--k K] [--pool P] [--seed X]
 *     generate --prompts IN.jsonl --expect OUT.jsonl [--infer-tps X]
 *   bench_serve --connect HOST:PORT --until-ok lookup --table NAME --values V.npy
 *
 * N client threads, each with its own connection (proto/us_client.h, blocking
 * calls), send R requests each or stop at S seconds, whichever comes first.
 * Every answer is checked:
 *  - lookup: a pool of P batches of T tokens x k random (row, weight) pairs;
 *    the expected sums come from an in-process us_gather_sum of the same rows
 *    of V.npy (the table the store was built from); max relative error
 *    (|served - local| / max |local| of the batch) must stay <= 1e-5. The same
 *    in-process gather, timed over the pool before and after the clients
 *    (better of the two), is the baseline: ratio = served tokens/s / local.
 *  - generate: prompt i of IN.jsonl (infer's input format) must produce the
 *    tokens of line i of OUT.jsonl (`ultrashard infer` of the same prompts,
 *    greedy); --infer-tps is infer's generated tokens/s of the same run, for
 *    the ratio.
 * One JSON line on stdout per run; exit 1 on any mismatch or failed request.
 * --until-ok: one client retries a lookup (each call with a 2 s timeout)
 * until one is answered correctly by a server whose Stats uptime is shorter
 * than the time since bench_serve started (so an answer of the job being
 * torn down does not count); prints the seconds it took (the restart
 * benchmark starts it right after killing a rank).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gather.h"
#include "proto/us_client.h"
#include "shard/tensorfile.h"
#include "kernels/stats.h"

typedef struct bench_opts {
    const char *address, *token_file, *mode, *label;
    const char *table, *values_path, *prompts_path, *expect_path;
    int clients, requests, until_ok;
    double seconds, infer_tps;
    double local_tps_before;  /* the in-process baseline measured before the clients */
    uint32_t tokens, k, pool;
    uint64_t seed;
} bench_opts;

typedef struct lookup_pool {
    uint32_t n_batches, tokens, k, dim;
    uint64_t *rows;          /* [n_batches][tokens * k] */
    float *weights;          /* [n_batches][tokens * k] */
    float *expected;         /* [n_batches][tokens * dim] */
    float *scale;            /* [n_batches] max |expected| */
    float *table;            /* the whole table, f32 [rows][dim] */
    us_rows_view view;
    const uint8_t *block0;
} lookup_pool;

typedef struct gen_pool {
    size_t n;
    char **prompts;
    uint32_t *max_tokens;
    uint32_t **tokens;       /* expected, [n][n_tokens[i]] */
    size_t *n_tokens;
} gen_pool;

typedef struct worker {
    int id;
    const bench_opts *o;
    const lookup_pool *lp;
    const gen_pool *gp;
    char *token;
    double deadline;
    uint64_t *lat_ns;        /* [requests] */
    size_t done, failed, mismatched;
    uint64_t tokens_out;
    double max_rel;
    char first_error[US_ERR_MSG_BYTES + 64];
} worker;

/* Returns: 0 when argv parsed, 2 after printing what is wrong. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){ .clients = 1, .requests = 200, .seconds = 10, .tokens = 16, .k = 8,
                       .pool = 64, .seed = 1, .label = "" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "lookup") || !strcmp(a, "generate")) { o->mode = a; continue; }
        if (!strcmp(a, "--until-ok")) { o->until_ok = 1; continue; }
        if (!v) { fprintf(stderr, "bench_serve: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--connect")) o->address = v;
        else if (!strcmp(a, "--token-file")) o->token_file = v;
        else if (!strcmp(a, "--label")) o->label = v;
        else if (!strcmp(a, "--table")) o->table = v;
        else if (!strcmp(a, "--values")) o->values_path = v;
        else if (!strcmp(a, "--prompts")) o->prompts_path = v;
        else if (!strcmp(a, "--expect")) o->expect_path = v;
        else if (!strcmp(a, "--clients")) o->clients = atoi(v);
        else if (!strcmp(a, "--requests")) o->requests = atoi(v);
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--infer-tps")) o->infer_tps = atof(v);
        else if (!strcmp(a, "--tokens")) o->tokens = (uint32_t)atoi(v);
        else if (!strcmp(a, "--k")) o->k = (uint32_t)atoi(v);
        else if (!strcmp(a, "--pool")) o->pool = (uint32_t)atoi(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else { fprintf(stderr, "bench_serve: unknown option %s\n", a); return 2; }
    }
    if (!o->address || !o->mode || o->clients < 1 || o->clients > 1024 || o->requests < 1 ||
        o->tokens < 1 || o->k < 1 || o->pool < 1 ||
        (!strcmp(o->mode, "lookup") && (!o->table || !o->values_path)) ||
        (!strcmp(o->mode, "generate") && (!o->prompts_path || !o->expect_path))) {
        fprintf(stderr, "bench_serve: see the usage at the top of tests/bench/bench_serve.c\n");
        return 2;
    }
    return 0;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Loads V.npy (f32 [rows][dim]) as a one-block view.
 * Returns: US_OK; the tensor file's errors; US_EUNSUPP for another dtype. */
static int load_table(lookup_pool *p, const char *path, us_err *err)
{
    us_tensor_file *f = NULL;
    const us_tensor_info *t;
    int rc = us_tf_open(path, &f, err);
    if (rc != US_OK)
        return rc;
    if ((rc = us_tf_find(f, NULL, &t, err)) != US_OK)
        goto done;
    if (t->dtype != US_DTYPE_F32 || t->ndim != 2 || t->rows >= (1ull << 40)) {
        rc = us_err_set(err, US_EUNSUPP, "%s: want a 2-D f32 table", path);
        goto done;
    }
    p->dim = (uint32_t)t->shape[1];
    if (!(p->table = malloc(t->nbytes ? t->nbytes : 1))) {
        rc = us_err_set(err, US_ENOMEM, "%s: %llu bytes", path, (unsigned long long)t->nbytes);
        goto done;
    }
    if ((rc = us_tf_read(f, t, p->table, t->nbytes, err)) != US_OK)
        goto done;
    p->block0 = (const uint8_t *)p->table;
    p->view = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = p->dim, .block_bits = 40,
                              .row_stride_bytes = t->row_bytes, .rows = t->rows,
                              .n_blocks = 1, .blocks = &p->block0 };
done:
    us_tf_close(f);
    return rc;
}

/* Builds the batches and their expected sums.
 * Returns: US_OK; US_ENOMEM; the gather's errors. */
static int lookup_pool_build(lookup_pool *p, const bench_opts *o, us_err *err)
{
    int rc = load_table(p, o->values_path, err);
    if (rc != US_OK)
        return rc;
    p->n_batches = o->pool; p->tokens = o->tokens; p->k = o->k;
    size_t pairs = (size_t)o->tokens * o->k, outs = (size_t)o->tokens * p->dim;
    p->rows = malloc(p->n_batches * pairs * sizeof *p->rows);
    p->weights = malloc(p->n_batches * pairs * sizeof *p->weights);
    p->expected = malloc(p->n_batches * outs * sizeof *p->expected);
    p->scale = calloc(p->n_batches, sizeof *p->scale);
    if (!p->rows || !p->weights || !p->expected || !p->scale)
        return us_err_set(err, US_ENOMEM, "lookup pool of %u batches", p->n_batches);
    uint64_t s = o->seed;
    for (size_t i = 0; i < p->n_batches * pairs; i++) {
        p->rows[i] = splitmix(&s) % p->view.rows;
        p->weights[i] = (float)(splitmix(&s) >> 40) / (float)(1u << 24);
    }
    for (uint32_t b = 0; b < p->n_batches; b++) {
        float *e = p->expected + b * outs;
        if ((rc = us_gather_sum(e, &p->view, p->rows + b * pairs, p->weights + b * pairs,
                                p->tokens, p->k, 1, err)) != US_OK)
            return rc;
        for (size_t i = 0; i < outs; i++)
            p->scale[b] = fmaxf(p->scale[b], fabsf(e[i]));
    }
    return US_OK;
}

/* The in-process baseline: the pool's batches gathered for ~0.5 s.
 * Returns: tokens/s. */
static double lookup_local_tps(const lookup_pool *p)
{
    float *out = malloc((size_t)p->tokens * p->dim * sizeof *out);
    size_t pairs = (size_t)p->tokens * p->k, n = 0;
    double t0 = us_now_s(), t;
    do {
        for (uint32_t b = 0; b < p->n_batches; b++, n++)
            us_gather_sum(out, &p->view, p->rows + b * pairs, p->weights + b * pairs,
                          p->tokens, p->k, 1, NULL);
    } while ((t = us_now_s() - t0) < 0.5);
    free(out);
    return (double)n * p->tokens / t;
}

static void note_error(worker *w, const char *what, const us_err *err)
{
    w->failed++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "client %d: %s: %s", w->id, what,
                 err->msg);
}

/* One Lookup of pool batch b, checked. Returns: US_OK or the call's error. */
static int do_lookup(worker *w, us_client *c, uint32_t b, us_err *err)
{
    const lookup_pool *p = w->lp;
    size_t pairs = (size_t)p->tokens * p->k, outs = (size_t)p->tokens * p->dim;
    us_client_lookup_args a = { .table = w->o->table, .n_tokens = p->tokens, .k = p->k,
                                .rows = p->rows + b * pairs, .weights = p->weights + b * pairs };
    float *out = NULL;
    uint32_t dim = 0;
    int rc = us_client_lookup(c, &a, &out, &dim, err);
    if (rc != US_OK)
        return rc;
    const float *e = p->expected + b * outs;
    double rel = 0;
    if (dim != p->dim) {
        rel = INFINITY;
    } else {
        for (size_t i = 0; i < outs; i++)
            rel = fmax(rel, fabs((double)out[i] - e[i]) / fmax(p->scale[b], 1e-30));
    }
    w->max_rel = fmax(w->max_rel, rel);
    if (!(rel <= 1e-5))
        w->mismatched++;
    w->tokens_out += p->tokens;
    free(out);
    return US_OK;
}

typedef struct token_sink {
    uint32_t *tokens;
    size_t n, cap;
} token_sink;

static int collect_tokens(void *ctx, const uint32_t *tokens, size_t n, const uint8_t *text,
                          size_t text_len)
{
    token_sink *s = ctx;
    (void)text; (void)text_len;
    for (size_t i = 0; i < n && s->n < s->cap; i++)
        s->tokens[s->n++] = tokens[i];
    return 0;
}

/* One Generate of prompt i, tokens compared with infer's.
 * Returns: US_OK or the call's error. */
static int do_generate(worker *w, us_client *c, size_t i, us_err *err)
{
    const gen_pool *g = w->gp;
    us_client_generate_args a = { .prompt = (const uint8_t *)g->prompts[i],
                                  .prompt_len = strlen(g->prompts[i]),
                                  .max_tokens = g->max_tokens[i] };
    uint32_t got[4096];
    token_sink sink = { .tokens = got, .cap = 4096 };
    us_client_generate_result res;
    int rc = us_client_generate(c, &a, collect_tokens, &sink, &res, err);
    if (rc != US_OK)
        return rc;
    w->tokens_out += res.generated_tokens;
    if (sink.n != g->n_tokens[i] ||
        memcmp(sink.tokens, g->tokens[i], sink.n * sizeof *sink.tokens) != 0) {
        if (!w->mismatched)
            fprintf(stderr, "bench_serve: client %d: prompt %zu: %zu tokens, infer made %zu"
                    " (or they differ)\n", w->id, i, sink.n, g->n_tokens[i]);
        w->mismatched++;
    }
    return US_OK;
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    us_err err = { 0 };
    us_client *c = NULL;
    us_client_opts co = { .address = w->o->address, .token = w->token, .io_timeout_ms = 30000 };
    if (us_client_open(&c, &co, &err) != US_OK) {
        note_error(w, "connect", &err);
        return NULL;
    }
    size_t n_items = w->lp ? w->lp->n_batches : w->gp->n;
    for (int r = 0; r < w->o->requests && us_now_s() < w->deadline; r++) {
        size_t item = ((size_t)w->id * 7919u + (size_t)r) % n_items;
        double t0 = us_now_s();
        int rc = w->lp ? do_lookup(w, c, (uint32_t)item, &err) : do_generate(w, c, item, &err);
        if (rc != US_OK) {
            note_error(w, w->lp ? "lookup" : "generate", &err);
            continue;
        }
        w->lat_ns[w->done++] = (uint64_t)((us_now_s() - t0) * 1e9);
    }
    us_client_close(c);
    return NULL;
}

/* Reads a JSON-lines file into cJSON objects. Returns: the count, -1 on error. */
static long read_jsonl(const char *path, cJSON ***out)
{
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "bench_serve: %s: cannot open\n", path); return -1; }
    char line[65536];
    long n = 0, cap = 0;
    cJSON **v = NULL;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) { fprintf(stderr, "bench_serve: %s:%ld: not JSON\n", path, n + 1); n = -1; break; }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            cJSON **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) { cJSON_Delete(j); n = -1; break; }
            v = nv;
        }
        v[n++] = j;
    }
    fclose(f);
    *out = v;
    return n;
}

/* Prompts (infer input) and the tokens infer produced for them (its output,
 * same order). Returns: 0, or 1 after printing what does not match. */
static int gen_pool_load(gen_pool *g, const bench_opts *o)
{
    cJSON **in = NULL, **exp = NULL;
    long n_in = read_jsonl(o->prompts_path, &in), n_exp = read_jsonl(o->expect_path, &exp);
    if (n_in <= 0 || n_in != n_exp) {
        fprintf(stderr, "bench_serve: %ld prompts in %s, %ld answers in %s\n", n_in,
                o->prompts_path, n_exp, o->expect_path);
        return 1;
    }
    g->n = (size_t)n_in;
    g->prompts = calloc(g->n, sizeof *g->prompts);
    g->max_tokens = calloc(g->n, sizeof *g->max_tokens);
    g->tokens = calloc(g->n, sizeof *g->tokens);
    g->n_tokens = calloc(g->n, sizeof *g->n_tokens);
    for (size_t i = 0; i < g->n; i++) {
        const cJSON *p = cJSON_GetObjectItem(in[i], "prompt");
        const cJSON *m = cJSON_GetObjectItem(in[i], "max_tokens");
        const cJSON *t = cJSON_GetObjectItem(exp[i], "tokens");
        if (!cJSON_IsString(p) || !cJSON_IsNumber(m) || !cJSON_IsArray(t)) {
            fprintf(stderr, "bench_serve: line %zu: want prompt, max_tokens / tokens\n", i + 1);
            return 1;
        }
        g->prompts[i] = strdup(p->valuestring);
        g->max_tokens[i] = (uint32_t)m->valuedouble;
        g->n_tokens[i] = (size_t)cJSON_GetArraySize(t);
        g->tokens[i] = calloc(g->n_tokens[i] + 1, sizeof **g->tokens);
        for (size_t j = 0; j < g->n_tokens[i]; j++)
            g->tokens[i][j] = (uint32_t)cJSON_GetArrayItem(t, (int)j)->valuedouble;
    }
    for (long i = 0; i < n_in; i++) { cJSON_Delete(in[i]); cJSON_Delete(exp[i]); }
    free(in); free(exp);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Returns: the q-quantile (nearest rank) of sorted v[n] in ms, 0 when empty. */
static double quantile_ms(const uint64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)ceil(q * (double)n);
    return (double)v[i ? i - 1 : 0] * 1e-6;
}

/* Returns: US_OK with the server's uptime (Stats); the call's errors. */
static int server_uptime_ms(us_client *c, uint64_t *out, us_err *err)
{
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    Ultrashard__StatsRequest stats = ULTRASHARD__STATS_REQUEST__INIT;
    Ultrashard__Response *resp = NULL;
    req.body_case = ULTRASHARD__REQUEST__BODY_STATS;
    req.stats = &stats;
    int rc = us_client_call(c, &req, &resp, err);
    if (rc != US_OK)
        return rc;
    if (resp->body_case != ULTRASHARD__RESPONSE__BODY_STATS) {
        us_client_response_free(resp);
        return us_err_set(err, US_EPROTO, "stats answer without a stats body");
    }
    *out = resp->stats->uptime_ms;
    us_client_response_free(resp);
    return US_OK;
}

/* --until-ok: retries a checked lookup of batch 0 until it succeeds.
 * Returns: 0 after printing the seconds it took; 1 when --seconds passed. */
static int until_ok(const bench_opts *o, const lookup_pool *p, char *token)
{
    double t0 = us_now_s();
    us_client_opts co = { .address = o->address, .token = token, .connect_timeout_ms = 500,
                          .io_timeout_ms = 2000, .max_retries = -1 };
    worker w = { .o = o, .lp = p };
    for (long attempt = 1; us_now_s() - t0 < o->seconds; attempt++) {
        us_err err = { 0 };
        us_client *c = NULL;
        size_t before = w.tokens_out;
        if (us_client_open(&c, &co, &err) == US_OK) {
            int rc = do_lookup(&w, c, 0, &err);
            uint64_t uptime_ms = UINT64_MAX;
            if (rc == US_OK)
                rc = server_uptime_ms(c, &uptime_ms, &err);
            us_client_close(c);
            /* an answer from the old job (still up until mpirun ends it) does not count */
            if (rc == US_OK && w.tokens_out > before && w.mismatched == 0 &&
                (double)uptime_ms * 1e-3 < us_now_s() - t0) {
                printf("{\"bench\":\"serve_restart\",\"until_ok_s\":%.3f,\"attempts\":%ld,"
                       "\"max_rel_err\":%.3g}\n", us_now_s() - t0, attempt, w.max_rel);
                return 0;
            }
        }
        struct timespec pause = { 0, 50 * 1000 * 1000 };
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "bench_serve: no correct lookup within %.0f s\n", o->seconds);
    return 1;
}

/* Runs the workers and prints the JSON line. Returns: the exit status. */
static int run_clients(const bench_opts *o, const lookup_pool *lp, const gen_pool *gp,
                       char *token)
{
    worker *w = calloc((size_t)o->clients, sizeof *w);
    pthread_t *th = calloc((size_t)o->clients, sizeof *th);
    double t0 = us_now_s();
    for (int i = 0; i < o->clients; i++) {
        w[i] = (worker){ .id = i, .o = o, .lp = lp, .gp = gp, .token = token,
                         .deadline = t0 + o->seconds,
                         .lat_ns = calloc((size_t)o->requests, sizeof(uint64_t)) };
        pthread_create(&th[i], NULL, worker_run, &w[i]);
    }
    size_t done = 0, failed = 0, mismatched = 0;
    uint64_t tokens = 0;
    double max_rel = 0;
    for (int i = 0; i < o->clients; i++)
        pthread_join(th[i], NULL);
    double secs = us_now_s() - t0;
    uint64_t *lat = calloc((size_t)o->clients * (size_t)o->requests + 1, sizeof *lat);
    for (int i = 0; i < o->clients; i++) {
        memcpy(lat + done, w[i].lat_ns, w[i].done * sizeof *lat);
        done += w[i].done; failed += w[i].failed; mismatched += w[i].mismatched;
        tokens += w[i].tokens_out; max_rel = fmax(max_rel, w[i].max_rel);
        if (w[i].first_error[0] && failed == w[i].failed)
            fprintf(stderr, "bench_serve: %s\n", w[i].first_error);
        free(w[i].lat_ns);
    }
    qsort(lat, done, sizeof *lat, cmp_u64);
    printf("{\"bench\":\"serve\",\"op\":\"%s\",\"label\":\"%s\",\"clients\":%d,"
           "\"requests\":%zu,\"failed\":%zu,\"mismatched\":%zu,\"seconds\":%.3f,"
           "\"requests_per_s\":%.1f,\"tokens_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f",
           o->mode, o->label, o->clients, done, failed, mismatched, secs, (double)done / secs,
           (double)tokens / secs, quantile_ms(lat, done, 0.5), quantile_ms(lat, done, 0.99));
    if (lp) {
        double local = fmax(lookup_local_tps(lp), o->local_tps_before);
        printf(",\"tokens_per_request\":%u,\"k\":%u,\"local_tokens_per_s\":%.1f,"
               "\"ratio_to_local\":%.4f,\"max_rel_err\":%.3g", lp->tokens, lp->k, local,
               (double)tokens / secs / local, max_rel);
    } else if (o->infer_tps > 0) {
        printf(",\"infer_tokens_per_s\":%.1f,\"ratio_to_infer\":%.4f", o->infer_tps,
               (double)tokens / secs / o->infer_tps);
    }
    printf("}\n");
    free(lat); free(w); free(th);
    return (failed || mismatched || done == 0) ? 1 : 0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    us_err err = { 0 };
    char *token = NULL;
    if (o.token_file && us_client_read_token(o.token_file, &token, &err) != US_OK) {
        fprintf(stderr, "bench_serve: %s\n", err.msg);
        return 1;
    }
    lookup_pool lp = { 0 };
    gen_pool gp = { 0 };
    int is_lookup = !strcmp(o.mode, "lookup");
    if (is_lookup && lookup_pool_build(&lp, &o, &err) != US_OK) {
        fprintf(stderr, "bench_serve: %s\n", err.msg);
        return 1;
    }
    if (!is_lookup && gen_pool_load(&gp, &o) != 0)
        return 1;
    if (o.until_ok)
        return is_lookup ? until_ok(&o, &lp, token) : 2;
    if (is_lookup)   /* the baseline before the clients; run_clients measures it again */
        o.local_tps_before = lookup_local_tps(&lp);
    rc = run_clients(&o, is_lookup ? &lp : NULL, is_lookup ? NULL : &gp, token);
    free(token);
    return rc;
}
