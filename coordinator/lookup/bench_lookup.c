/* bench_lookup.c — the lookup benchmark (see bench_lookup.h). */
#include "coordinator/lookup/bench_lookup.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "coordinator/lookup/job.h"
#include "coordinator/lookup/lookup.h"
#include "coordinator/lookup/pipe.h"
#include "kernels/gather.h"
#include "kernels/hash.h"
#include "kernels/stats.h"
#include "coordinator/lookup/route.h"
#include "shard/synth_view.h"

typedef struct bench_result {
    char transport[16], provider[64], placement[8], mode[12];
    double tokens_per_s, rows_per_s, sent_per_token, recv_per_token, msgs_per_batch;
    double p50_ms, p99_ms, base_tokens_per_s, ratio, max_rel_err;
    double keygen_us;            /* per batch, excluded from the timing */
    uint64_t push_batches, pull_batches, cache_batches;
    double cache_hit_rate;       /* -1: no cache */
    uint64_t out_hash;           /* FNV-1a of the first batch's output bytes */
} bench_result;

/* Results printed so far (rank 0), for the closing table. */
typedef struct bench_results {
    bench_result items[32];
    int n;
} bench_results;

us_bench_lookup_opts us_bench_lookup_defaults(void)
{
    us_bench_lookup_opts o = { .rows = 131072, .dim = 128, .tokens = 256, .k = 32,
                               .batches = 20, .dtype = US_DTYPE_F32, .hot = 0.2,
                               .threads = 1, .read_us = -1, .pipeline = 1 };
    snprintf(o.transports, sizeof o.transports, "mpi,fabric");
    snprintf(o.modes, sizeof o.modes, "push,pull,pullmsg");
    snprintf(o.placements, sizeof o.placements, "row,column");
    return o;
}

static bool in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static uint64_t rng(uint64_t *s)
{
    return us_splitmix64_next(s);
}

/* Zipf(a) rank in [0, n) by inverting the continuous power law on [1, n+1)
 * (a bounded Pareto): close to the discrete law for the large n used here,
 * and O(1) per draw. */
static uint64_t zipf_rank(double a, uint64_t n, double u)
{
    double x, top = (double)n + 1.0;
    if (fabs(a - 1.0) < 1e-9)
        x = pow(top, u);
    else
        x = pow(1.0 + u * (pow(top, 1.0 - a) - 1.0), 1.0 / (1.0 - a));
    uint64_t r = (uint64_t)x - 1;
    return r < n ? r : n - 1;
}

static void make_batch(const us_bench_lookup_opts *o, uint64_t seed, uint64_t *rows, float *w)
{
    uint64_t s = seed, n = (uint64_t)o->tokens * o->k;
    for (uint64_t p = 0; p < n; p++) {
        uint64_t x = rng(&s);
        bool hot = (double)(x >> 11) * 0x1p-53 < o->hot;
        uint64_t y = rng(&s);
        if (o->zipf > 0)   /* rank r -> a row spread over the table's blocks */
            rows[p] = zipf_rank(o->zipf, o->rows, (double)(y >> 11) * 0x1p-53) * 977 % o->rows;
        else
            rows[p] = hot ? (y % 1024) * 977 % o->rows : y % o->rows;
        w[p] = (float)((rng(&s) >> 40) * 0x1p-24) - 0.5f;
    }
}

static double now_s(void) { return MPI_Wtime(); }

/* The output's fingerprint: runs that must agree bit for bit (materialised
 * vs on-the-fly rows) compare it. */
static uint64_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* One configuration's coordinator work: what it measures and where. */
typedef struct bench_work {
    const us_world *w;
    us_transport *const *t;      /* [pipe->depth] */
    const us_bench_lookup_opts *o;
    const us_table_info *table;
    const us_rows_view *whole;   /* rank 0: the whole table (baseline); else NULL */
    us_synth_source *whole_src;  /* rank 0 on the fly: the whole table's rows */
    us_lookup_pipe *pipe;
    bench_result *res;
} bench_work;

/* The on-the-fly baseline's scratch: the batch deduplicated (as the
 * coordinator does), its distinct rows computed, pairs indexing them. */
typedef struct fly_base {
    us_route route;
    us_synth_batch rows;
    uint64_t *idx;               /* [pairs] */
} fly_base;

/* The single-process gather of one batch into ref: over the whole table, or
 * (on the fly) over the batch's distinct rows computed now. */
static int baseline_gather(const bench_work *bw, fly_base *fb, const uint64_t *rows,
                           const float *wt, float *ref, us_err *err)
{
    const us_bench_lookup_opts *o = bw->o;
    if (bw->whole_src == NULL)
        return us_gather_sum(ref, bw->whole, rows, wt, o->tokens, o->k, o->threads, err);
    int rc = us_route_dedupe(&fb->route, bw->table, rows, o->tokens, o->k, err);
    if (rc == US_OK)
        rc = us_synth_batch_fill(&fb->rows, bw->whole_src, fb->route.uniq_rows,
                                 fb->route.n_unique, err);
    if (rc != US_OK)
        return rc;
    for (uint64_t p = 0; p < (uint64_t)o->tokens * o->k; p++)
        fb->idx[p] = fb->route.pair_uidx[p];
    return us_gather_sum(ref, &fb->rows.view, fb->idx, wt, o->tokens, o->k, o->threads, err);
}

/* Largest relative error of the batch's distributed result against the
 * single-process gather of the same pairs. */
static int check_batch(const bench_work *bw, fly_base *fb, const uint64_t *rows,
                       const float *wt, const float *out, float *ref, double *max_rel,
                       us_err *err)
{
    const us_bench_lookup_opts *o = bw->o;
    uint32_t dim = bw->table->dim;
    int rc = baseline_gather(bw, fb, rows, wt, ref, err);
    for (uint32_t tok = 0; rc == US_OK && tok < o->tokens; tok++) {
        double mr = 0, md = 0;
        for (uint32_t c = 0; c < dim; c++) {
            size_t i = (size_t)tok * dim + c;
            mr = fmax(mr, fabs(ref[i]));
            md = fmax(md, fabs((double)out[i] - ref[i]));
        }
        *max_rel = fmax(*max_rel, mr > 0 ? md / mr : md);
    }
    return rc;
}

static void fill_result(const bench_work *bw, const us_transport_stats *before,
                        const us_transport_stats *after, double wall, double gen, double *lat,
                        double max_rel)
{
    const us_bench_lookup_opts *o = bw->o;
    bench_result *res = bw->res;
    uint64_t push_batches = 0, pull_batches = 0, cache_batches = 0;
    for (int i = 0; i < bw->pipe->depth; i++) {
        const us_lookup_stats *st = us_lookup_get_stats(bw->pipe->L[i]);
        push_batches += st->push_batches;
        pull_batches += st->pull_batches;
        cache_batches += st->cache_batches;
    }
    double tokens = (double)o->tokens * o->batches;
    us_sort_doubles(lat, o->batches);
    res->tokens_per_s = tokens / wall;
    res->rows_per_s = tokens * o->k / wall;
    res->sent_per_token = (double)(after->bytes_sent - before->bytes_sent) / tokens;
    res->recv_per_token = (double)(after->bytes_recv - before->bytes_recv +
                                   after->rma_bytes - before->rma_bytes) / tokens;
    res->msgs_per_batch = (double)(after->msgs_sent - before->msgs_sent +
                                   after->msgs_recv - before->msgs_recv +
                                   after->rma_reads - before->rma_reads) / o->batches;
    res->p50_ms = us_percentile_sorted(lat, o->batches, 0.50) * 1e3;
    res->p99_ms = us_percentile_sorted(lat, o->batches, 0.99) * 1e3;
    res->keygen_us = gen / o->batches * 1e6;
    res->max_rel_err = max_rel;
    res->push_batches = push_batches;
    res->pull_batches = pull_batches;
    res->cache_batches = cache_batches;
    const us_rowcache *cache = us_lookup_cache(bw->pipe->L[0]);   /* the first lookup's */
    res->cache_hit_rate = cache == NULL ? -1
        : (double)cache->hits / (double)(cache->hits + cache->misses > 0
                                         ? cache->hits + cache->misses : 1);
}

/* A batch slot of the pipe: its pairs, output and start time. */
typedef struct bench_slot {
    uint64_t *rows;
    float *wt, *out;
    double started;
} bench_slot;

/* Per-run buffers of the coordinator loop. */
typedef struct bench_bufs {
    bench_slot slot[US_PIPE_MAX_DEPTH];
    float *ref;
    double *lat;
    fly_base fb;
} bench_bufs;

/* Buffers for `slots` batches in flight (the pipe's depth; the baseline
 * after the job, when the pipe is closed, uses one). */
static int bufs_alloc(bench_bufs *bb, const bench_work *bw, int slots, us_err *err)
{
    const us_bench_lookup_opts *o = bw->o;
    uint64_t n = (uint64_t)o->tokens * o->k;
    size_t out_floats = (size_t)o->tokens * bw->table->dim;
    bool ok = true;
    for (int i = 0; i < slots; i++) {
        bench_slot *sl = &bb->slot[i];
        sl->rows = malloc(n * sizeof *sl->rows);
        sl->wt = malloc(n * sizeof *sl->wt);
        sl->out = malloc(out_floats * sizeof *sl->out);
        ok = ok && sl->rows && sl->wt && sl->out;
    }
    bb->ref = malloc(out_floats * sizeof *bb->ref);
    bb->lat = calloc(o->batches, sizeof *bb->lat);
    bb->fb.idx = malloc(n * sizeof *bb->fb.idx);
    if (!ok || !bb->ref || !bb->lat || !bb->fb.idx)
        return us_err_set(err, US_ENOMEM, "bench: batch buffers");
    return US_OK;
}

static void bufs_free(bench_bufs *bb)
{
    for (int i = 0; i < US_PIPE_MAX_DEPTH; i++) {
        free(bb->slot[i].rows);
        free(bb->slot[i].wt);
        free(bb->slot[i].out);
    }
    free(bb->ref);
    free(bb->lat);
    free(bb->fb.idx);
    us_route_free(&bb->fb.route);
    us_synth_batch_free(&bb->fb.rows);
}

/* Batch b's keys on this coordinator: the run and the baseline after it
 * draw the same batches. */
static uint64_t batch_seed(const bench_work *bw, uint32_t b)
{
    return 1000u * (uint64_t)bw->w->coordinator_index + b;
}

/* Ends batch b (the oldest in flight): its latency and, for batch 0 (warm-up,
 * untimed), the check against the single-process gather on rank 0. The
 * baseline is timed apart, after the job (baseline_alone): timed here,
 * between batches, it shared the cores with the shards' polling and ran at
 * 0.5-1x of alone from run to run, and with batches in flight it stalled
 * their progress while rank 0 gathered. */
static int end_batch(const bench_work *bw, bench_bufs *bb, uint32_t b, double *max_rel,
                     us_err *err)
{
    const us_bench_lookup_opts *o = bw->o;
    bench_slot *sl = &bb->slot[b % (uint32_t)bw->pipe->depth];
    int rc = us_lookup_pipe_end(bw->pipe, sl->out, err);
    if (b >= 2)
        bb->lat[b - 2] = now_s() - sl->started;
    bool baseline = bw->whole != NULL || bw->whole_src != NULL;
    if (rc == US_OK && b == 0 && baseline) {
        rc = check_batch(bw, &bb->fb, sl->rows, sl->wt, sl->out, bb->ref, max_rel, err);
        bw->res->out_hash = fnv1a(sl->out, (size_t)o->tokens * bw->table->dim * sizeof(float));
    }
    return rc;
}

static us_transport_stats pipe_stats(const bench_work *bw)
{
    us_transport_stats s = {0};
    for (int i = 0; i < bw->pipe->depth; i++) {
        const us_transport_stats *t = &bw->t[i]->stats;
        s.bytes_sent += t->bytes_sent;
        s.bytes_recv += t->bytes_recv;
        s.msgs_sent += t->msgs_sent;
        s.msgs_recv += t->msgs_recv;
        s.rma_bytes += t->rma_bytes;
        s.rma_reads += t->rma_reads;
    }
    return s;
}

/* Coordinators: 2 warm-up batches, then the timed ones, up to depth in
 * flight (batch b begins before batch b - depth + 1 ends). The timed window
 * opens before batch 2 begins, so it also holds the end of the warm-up
 * batches still in flight (a little more work, never less). The stats are
 * taken before finish, whose STOP rounds are not part of the measurement. */
static int bench_coordinate(void *arg, us_err *err)
{
    const bench_work *bw = arg;
    const us_bench_lookup_opts *o = bw->o;
    uint32_t depth = (uint32_t)bw->pipe->depth, total = o->batches + 2;
    bench_bufs bb = {0};
    int rc = bufs_alloc(&bb, bw, bw->pipe->depth, err);
    us_transport_stats before = pipe_stats(bw);
    double t0 = 0, max_rel = 0, gen = 0;
    for (uint32_t b = 0; rc == US_OK && b < total + depth - 1; b++) {
        if (b == 2) {      /* after warm-up */
            before = pipe_stats(bw);
            t0 = now_s();
        }
        if (b < total) {
            bench_slot *sl = &bb.slot[b % depth];
            /* the keys stand in for the model's top-k: not lookup work, and
             * the single-process baseline does not pay for them either
             * (~50 us per 8192-pair batch here: 3 random numbers and a
             * 64-bit modulo per pair) */
            double g0 = now_s();
            make_batch(o, batch_seed(bw, b), sl->rows, sl->wt);
            if (b >= 2)
                gen += now_s() - g0;
            us_lookup_batch batch = { o->tokens, o->k, sl->rows, sl->wt, NULL };
            sl->started = now_s();
            rc = us_lookup_pipe_begin(bw->pipe, &batch, err);
        }
        if (rc == US_OK && b + 1 >= depth)
            rc = end_batch(bw, &bb, b + 1 - depth, &max_rel, err);
    }
    double wall = now_s() - t0 - gen;   /* distributed lookups only */
    us_transport_stats after = pipe_stats(bw);
    if (rc == US_OK)
        fill_result(bw, &before, &after, wall, gen, bb.lat, max_rel);
    bufs_free(&bb);
    return rc;
}

/* Waits for every rank asleep: a barrier polled every millisecond, so a
 * waiting rank takes no CPU (Open MPI's own waits spin, yielding). */
static void sleepy_barrier(const us_world *w)
{
    MPI_Request req;
    int done = 0;
    MPI_Ibarrier(w->comm, &req);
    for (MPI_Test(&req, &done, MPI_STATUS_IGNORE); !done;
         MPI_Test(&req, &done, MPI_STATUS_IGNORE)) {
        struct timespec nap = { 0, 1000000 };
        nanosleep(&nap, NULL);
    }
}

/* The single-process baseline alone: after the distributed run, rank 0
 * gathers the same timed batches again (same keys) while every other rank
 * sleeps in sleepy_barrier, as one process would run on this box by itself.
 * Until 2026-12-04 it was timed between batches (see end_batch): 731k-1.45M
 * tokens/s over 6 runs of push row, a ratio of 0.33-0.62 at the same
 * distributed speed; alone 1.60-1.68M. */
static int baseline_alone(const bench_work *bw, us_err *err)
{
    const us_bench_lookup_opts *o = bw->o;
    int rc = US_OK;
    if (bw->whole != NULL || bw->whole_src != NULL) {
        bench_bufs bb = {0};
        bench_slot *sl = &bb.slot[0];
        rc = bufs_alloc(&bb, bw, 1, err);
        double base = 0;
        for (uint32_t b = 0; rc == US_OK && b < o->batches + 2; b++) {   /* 2 warm-up, as the run */
            make_batch(o, batch_seed(bw, b), sl->rows, sl->wt);
            double b0 = now_s();
            rc = baseline_gather(bw, &bb.fb, sl->rows, sl->wt, bb.ref, err);
            if (b >= 2)
                base += now_s() - b0;
        }
        bufs_free(&bb);
        bench_result *res = bw->res;
        double tokens = (double)o->tokens * o->batches;
        res->base_tokens_per_s = base > 0 ? tokens / base : 0;
        res->ratio = base > 0 ? res->tokens_per_s / res->base_tokens_per_s : 0;
    }
    sleepy_barrier(bw->w);
    return rc;
}

/* One configuration, collectively: open a lookup, run it as a job. */
/* One placement's table, built once and measured on every selected
 * transport and mode: materialised views, or on the fly the sources. */
typedef struct bench_table {
    const char *placement;
    us_table_info info;
    us_synth_view local, whole;
    us_synth_source src_local, src_whole;   /* on the fly */
    unsigned long long shard_max;   /* rank 0: largest shard view */
} bench_table;

static int bench_one(const us_world *w, us_transport *const *t, const us_bench_lookup_opts *o,
                     bench_table *bt, us_lookup_mode mode, bool pull_by_messages,
                     bench_result *res, us_err *err)
{
    const us_table_info *table = &bt->info;
    const us_rows_view *local = &bt->local.view;
    us_lookup_opts lo = { .mode = mode, .max_tokens = o->tokens, .max_k = o->k,
                          .n_threads = o->threads, .cache_bytes = o->cache_bytes,
                          .cache_always = o->cache_always,
                          .pull_by_messages = pull_by_messages,
                          .synth = o->on_the_fly ? &bt->src_local : NULL };
    if (o->read_us >= 0) {
        lo.cost = us_cost_params_default();
        lo.cost.read_us = o->read_us;
    }
    us_lookup_pipe pipe;
    int rc = us_lookup_pipe_open(&pipe, o->pipeline, w, t, table,
                                 w->is_shard && !o->on_the_fly ? local : NULL, &lo, err);
    if (rc != US_OK)
        return rc;
    bool r0 = w->rank == 0;
    bench_work bw = { .w = w, .t = t, .o = o, .table = table, .pipe = &pipe, .res = res,
                      .whole = r0 && !o->on_the_fly ? &bt->whole.view : NULL,
                      .whole_src = r0 && o->on_the_fly ? &bt->src_whole : NULL };
    rc = us_job_run(w, us_lookup_pipe_engine(&pipe), bench_coordinate, &bw, err);
    return rc == US_OK ? baseline_alone(&bw, err) : rc;
}

static void print_result(const us_world *w, const us_bench_lookup_opts *o, const bench_result *r,
                         uint64_t shard_bytes, uint64_t whole_bytes)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\":\"lookup\",\"transport\":\"%s\",\"provider\":\"%s\",\"placement\":\"%s\","
           "\"mode\":\"%s\",\"ranks\":%d,\"coordinators\":%d,\"shards\":%d,\"rows\":%llu,"
           "\"dim\":%u,\"dtype\":\"%s\",\"tokens\":%u,\"k\":%u,\"batches\":%u,\"hot\":%.2f,\"zipf\":%.2f,"
           "\"push_batches\":%llu,\"pull_batches\":%llu,"
           "\"tokens_per_s\":%.1f,\"rows_per_s\":%.1f,\"bytes_sent_per_token\":%.1f,"
           "\"bytes_recv_per_token\":%.1f,\"msgs_per_batch\":%.1f,\"p50_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"baseline_tokens_per_s\":%.1f,\"ratio_vs_baseline\":%.4f,"
           "\"max_rel_err\":%.3g,\"cache_hit_rate\":%.4f,\"cache_batches\":%llu,\"shard_view_bytes_max\":%llu,\"whole_table_bytes\":%llu,"
           "\"rank0_maxrss_kib\":%ld,\"out_hash\":\"%016llx\",\"pipeline\":%d,\"keygen_us_per_batch\":%.1f}\n",
           r->transport, r->provider, r->placement, r->mode, w->size, w->n_coordinators,
           w->n_shards, (unsigned long long)o->rows, o->dim, us_dtype_name(o->dtype),
           o->tokens, o->k, o->batches, o->hot, o->zipf, (unsigned long long)r->push_batches,
           (unsigned long long)r->pull_batches, r->tokens_per_s, r->rows_per_s,
           r->sent_per_token, r->recv_per_token, r->msgs_per_batch, r->p50_ms, r->p99_ms,
           r->base_tokens_per_s, r->ratio, r->max_rel_err, r->cache_hit_rate,
           (unsigned long long)r->cache_batches, (unsigned long long)shard_bytes,
           (unsigned long long)whole_bytes, ru.ru_maxrss, (unsigned long long)r->out_hash, o->pipeline,
           r->keygen_us);
    fflush(stdout);
}

static void print_table(const bench_results *rs)
{
    printf("\n%-7s %-12s %-6s %-7s %11s %11s %9s %9s %8s %8s %8s %7s %9s\n", "transp",
           "provider", "place", "mode", "tokens/s", "baseline/s", "ratio", "B/token",
           "msgs/bat", "p50 ms", "p99 ms", "relerr", "push/pull");
    for (int i = 0; i < rs->n; i++) {
        const bench_result *r = &rs->items[i];
        printf("%-7s %-12s %-6s %-7s %11.0f %11.0f %9.4f %9.0f %8.1f %8.3f %8.3f %7.1e "
               "%4llu/%-4llu\n", r->transport, r->provider, r->placement, r->mode,
               r->tokens_per_s, r->base_tokens_per_s, r->ratio,
               r->sent_per_token + r->recv_per_token, r->msgs_per_batch, r->p50_ms,
               r->p99_ms, r->max_rel_err, (unsigned long long)r->push_batches,
               (unsigned long long)r->pull_batches);
    }
    printf("(ratio = distributed tokens/s over the single-process gather of the same "
           "batches on rank 0, run alone after the job with the other ranks asleep; "
           "B/token = bytes sent + received by coordinator 0)\n");
}

static const char *const mode_names[4] = { "push", "pull", "pullmsg", "auto" };
/* pullmsg: pull by ROWS messages even where one-sided reads exist */
static const us_lookup_mode mode_kinds[4] = { US_LOOKUP_PUSH, US_LOOKUP_PULL, US_LOOKUP_PULL,
                                              US_LOOKUP_AUTO };

static void bench_transport(const us_world *w, const us_bench_lookup_opts *o,
                            bench_table *bt, const char *tname, bench_results *rs)
{
    us_err err = {0};
    us_lookup_opts sizing = { .max_tokens = o->tokens, .max_k = o->k };
    us_transport_opts topts = {
        .max_msg_bytes = us_lookup_max_msg_bytes(&bt->info, &sizing, w->n_shards) };
    us_transport *ts[US_PIPE_MAX_DEPTH] = {0}, *t = NULL;
    for (int i = 0; i < o->pipeline; i++)   /* one per batch in flight (pipe.h) */
        if (us_transport_open(tname, w, &topts, &ts[i], &err) != US_OK) {
            if (w->rank == 0)
                fprintf(stderr, "ultrashard bench: skipping transport %s: %s\n", tname,
                        err.msg);
            for (int j = 0; j < i; j++)
                us_transport_close(ts[j]);
            return;
        }
    t = ts[0];
    for (int mi = 0; mi < 4; mi++) {
        if (!in_list(o->modes, mode_names[mi]) ||
            (mi == 2 && strcmp(t->ops->name, "fabric") != 0))
            continue;
        bench_result r = {0};
        if (bench_one(w, ts, o, bt, mode_kinds[mi], mi == 2, &r, &err) != US_OK) {
            fprintf(stderr, "ultrashard bench: rank %d: %s\n", w->rank, err.msg);
            us_world_abort(w, &err);
        }
        if (w->rank == 0 && rs->n < 32) {
            snprintf(r.transport, sizeof r.transport, "%s", tname);
            snprintf(r.provider, sizeof r.provider, "%s", t->provider);
            snprintf(r.placement, sizeof r.placement, "%s", bt->placement);
            snprintf(r.mode, sizeof r.mode, "%s", mode_names[mi]);
            print_result(w, o, &r, bt->shard_max, bt->whole.bytes);
            rs->items[rs->n++] = r;
        }
    }
    for (int i = 0; i < o->pipeline; i++)
        us_transport_close(ts[i]);
}

/* Collective: this rank's view of placement pi (rank 0 also the whole
 * table), then every transport. */
static void bench_placement(const us_world *w, const us_bench_lookup_opts *o, int pi,
                            bench_results *rs)
{
    static const char *const pnames[2] = { "row", "column" };
    static const char *const tnames[2] = { "mpi", "fabric" };
    bench_table bt = {
        .placement = pnames[pi],
        .info = { .table_id = 1, .rows = o->rows, .dim = o->dim, .dtype = o->dtype,
                  .block_bits = 12, .placement_seed = 7, .placement = (us_placement_kind)pi },
    };
    us_synth_spec spec = { .dtype = o->dtype, .synth_seed = 42, .table_id = 1,
                           .rows = o->rows, .dim = o->dim, .block_bits = 12,
                           .placement_seed = 7, .column = pi == 1, .n_shards = w->n_shards,
                           .shard_index = w->is_shard ? w->shard_index : 0 };
    us_err err = {0};
    int rc = US_OK;
    if (o->on_the_fly)   /* every rank: the lookup wants a source on all or none */
        rc = us_synth_source_init(&bt.src_local, &spec, &err);
    else if (w->is_shard)
        rc = us_synth_view_build(&bt.local, &spec, &err);
    spec.shard_index = -1;
    if (rc == US_OK && w->rank == 0)
        rc = o->on_the_fly ? us_synth_source_init(&bt.src_whole, &spec, &err)
                           : us_synth_view_build(&bt.whole, &spec, &err);
    if (rc != US_OK)
        us_world_abort(w, &err);
    unsigned long long mine = bt.local.bytes;
    MPI_Reduce(&mine, &bt.shard_max, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, w->comm);
    for (int ti = 0; ti < 2; ti++)
        if (in_list(o->transports, tnames[ti]))
            bench_transport(w, o, &bt, tnames[ti], rs);
    us_synth_view_free(&bt.local);
    us_synth_view_free(&bt.whole);
    us_synth_source_free(&bt.src_local);
    us_synth_source_free(&bt.src_whole);
}

int us_bench_lookup_run(const us_bench_lookup_opts *o, int *argc, char ***argv, us_err *err)
{
    us_world w;
    int rc = us_world_init(&w, argc, argv, &o->world, err);
    if (rc != US_OK)
        return rc;
    bench_results rs = { .n = 0 };
    for (int pi = 0; pi < 2; pi++)
        if (in_list(o->placements, pi == 0 ? "row" : "column"))
            bench_placement(&w, o, pi, &rs);
    int bad = 0;
    if (w.rank == 0) {
        print_table(&rs);
        for (int i = 0; i < rs.n; i++)
            bad += rs.items[i].max_rel_err > 1e-5;
    }
    MPI_Bcast(&bad, 1, MPI_INT, 0, w.comm);
    us_world_finalize(&w);
    if (bad > 0)
        return us_err_set(err, US_ECORRUPT, "bench lookup: %d configurations differ from the "
                          "single-process gather by more than 1e-5 (rank 0's table)", bad);
    return US_OK;
}
