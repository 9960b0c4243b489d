/*
 * lookup_check.c — the distributed lookup equals the single-process gather.
 *
 *   mpirun -n N lookup_check [--transport mpi|fabric] [--coordinators C]
 *                            [--all-roles] [--quick] [--malformed] [--dump DIR]
 *                            [--store DIR [--table NAME]]
 *
 * Runs a matrix of cases in one job (so one mpirun covers many): placement
 * row/column x two placement seeds x mode push/pull/auto x dtypes, with and
 * without IVE groups and the hot-row cache. Every coordinator runs the same
 * batches (its own random rows, with duplicates inside a batch) and compares
 * with us_gather_sum_ref over the whole table built in-process:
 *   pull, and push with column placement: bit-identical (same pair order)
 *   push with row placement, or with cached rows: max |a - b| / max |ref|
 *     per token <= 1e-5 (only the summation order differs; stored values are
 *     dequantised exactly, so the bound holds for f32, bf16, f16 and int8)
 * --malformed: coordinator 0 sends broken requests to shard 0 (bad magic,
 * truncated, row out of range, row not held, wrong table, unsorted tokens)
 * and valid ones to the other shards in the same round; shard 0 must answer
 * each with the right error code, the others the right sums, and a normal
 * batch afterwards must succeed everywhere.
 * --store DIR: instead of synthetic tables, shards serve their blocks from
 * a store built by `ultrashard import` (mmap backend), push/pull/auto.
 * Prints one line per case on rank 0 and "lookup_check ok: ..." at the end;
 * exit 1 on any mismatch.
 */
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/lookup/job.h"
#include "coordinator/lookup/lookup.h"
#include "kernels/gather.h"
#include "kernels/hash.h"
#include "kernels/score.h"
#include "proto/placement.h"
#include "shard/store.h"
#include "shard/synth_view.h"

typedef struct check_case {
    us_placement_kind place;
    uint64_t placement_seed;
    us_lookup_mode mode;
    us_dtype dtype;
    uint32_t n_groups;
    uint64_t cache_bytes;
} check_case;

#define ROWS       3000u
#define DIM        20u
#define BLOCK_BITS 5u
#define TOKENS     29u
#define K          8u
#define BATCHES    3

static uint64_t rng_next(uint64_t *s)
{
    return us_splitmix64_next(s);
}

/* rows: half from a hot set of 16 (duplicates within and across tokens) */
static void make_batch(uint64_t seed, uint64_t *rows, float *w, uint8_t *g, uint32_t n_groups)
{
    uint64_t s = seed;
    for (uint32_t p = 0; p < TOKENS * K; p++) {
        uint64_t x = rng_next(&s);
        rows[p] = (x & 1) ? (x >> 8) % 16 * 97 % ROWS : (x >> 8) % ROWS;
        w[p] = (float)((int)(rng_next(&s) % 2001) - 1000) / 1000.0f;
        g[p] = (uint8_t)(rng_next(&s) % n_groups);
    }
}

static const char *mode_name(us_lookup_mode m)
{
    return m == US_LOOKUP_PUSH ? "push" : m == US_LOOKUP_PULL ? "pull" : "auto";
}

/* Compares out with ref; exact: bitwise equality required. */
static int compare(const float *out, const float *ref, uint32_t n_tok, uint32_t width,
                   bool exact, double *worst)
{
    for (uint32_t t = 0; t < n_tok; t++) {
        double maxref = 0, maxdiff = 0;
        for (uint32_t c = 0; c < width; c++) {
            float a = out[(size_t)t * width + c], b = ref[(size_t)t * width + c];
            if (exact && memcmp(&a, &b, 4) != 0 && !(a == 0 && b == 0))
                return -1;
            maxref = fmax(maxref, fabs(b));
            maxdiff = fmax(maxdiff, fabs((double)a - b));
        }
        double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
        if (rel > *worst)
            *worst = rel;
    }
    return *worst <= 1e-5 ? 0 : -1;
}

static const char *g_dump_dir;   /* --dump DIR: f32 cases' first batch for tests/ref */

/* Writes rows, weights and the distributed output of one batch as raw
 * arrays plus a meta line, for the independent numpy check (tests/ref/lookup.py). */
static void dump_batch(int case_no, const char *place, const uint64_t *rows, const float *w,
                       const float *out)
{
    char path[512];
    static const char *const names[3] = { "rows.u64", "weights.f32", "out.f32" };
    const void *data[3] = { rows, w, out };
    size_t bytes[3] = { TOKENS * K * 8, TOKENS * K * 4, TOKENS * DIM * 4 };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/case%02d.%s", g_dump_dir, case_no, names[i]);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(data[i], 1, bytes[i], f) != bytes[i])
            fprintf(stderr, "lookup_check: cannot write %s\n", path);
        if (f)
            fclose(f);
    }
    snprintf(path, sizeof path, "%s/case%02d.meta", g_dump_dir, case_no);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "seed=42 table=7 rows=%u dim=%u tokens=%u k=%u placement=%s\n", ROWS, DIM,
                TOKENS, K, place);
        fclose(f);
    }
}

/* The coordinator's side of one case (shards serve it: us_job_run). */
typedef struct case_work {
    const us_world *w;
    us_transport *t;
    const check_case *cc;
    int case_no;
    us_lookup *L;
    us_synth_spec spec;          /* the table; shard_index -1 = the whole table */
    int bad;                     /* batches that differ from the reference */
} case_work;

static int case_batches(case_work *cw, const us_rows_view *whole, double *worst,
                        bool *all_exact, us_err *err)
{
    const check_case *cc = cw->cc;
    const us_world *w = cw->w;
    us_lookup *L = cw->L;
    size_t width = (size_t)cc->n_groups * DIM;
    uint64_t rows[TOKENS * K];
    float wts[TOKENS * K];
    uint8_t grp[TOKENS * K];
    float *out = malloc(TOKENS * width * sizeof(float));
    float *ref = malloc(TOKENS * width * sizeof(float));
    int rc = US_OK;
    /* odd coordinators run one batch less: finish() must keep them in step
     * (STOP rounds) while the others still have work */
    int my_batches = BATCHES - (w->coordinator_index % 2);
    for (int b = 0; b < my_batches && rc == US_OK; b++) {
        make_batch((uint64_t)cw->case_no * 1000 + (uint64_t)b * 10 +
                   (uint64_t)w->coordinator_index, rows, wts, grp, cc->n_groups);
        us_lookup_batch batch = { TOKENS, K, rows, wts, cc->n_groups > 1 ? grp : NULL };
        /* with a cache: the first two batches pull (the cache admits a hot
         * row once it is seen again), later batches use the case's mode and
         * find hot rows cached */
        if (cc->cache_bytes > 0)
            us_lookup_set_mode(L, b < 2 ? US_LOOKUP_PULL : cc->mode);
        uint64_t local_before = us_lookup_get_stats(L)->local_rows;
        rc = us_lookup_run(L, &batch, out, err);
        if (rc != US_OK)
            break;
        rc = cc->n_groups > 1
            ? us_gather_sum_grouped_ref(ref, whole, rows, wts, grp, TOKENS, K,
                                        (int)cc->n_groups, err)
            : us_gather_sum_ref(ref, whole, rows, wts, TOKENS, K, err);
        if (rc != US_OK)
            break;
        if (g_dump_dir && b == 0 && w->rank == 0 && cc->dtype == US_DTYPE_F32 &&
            cc->n_groups == 1)
            dump_batch(cw->case_no, cc->place == US_PLACE_ROW ? "row" : "column", rows, wts,
                       out);
        bool used_local = us_lookup_get_stats(L)->local_rows > local_before;
        bool exact = us_lookup_last_mode(L) == US_LOOKUP_PULL ||
                     (cc->place == US_PLACE_COLUMN && !used_local);
        *all_exact = *all_exact && exact;
        if (compare(out, ref, TOKENS, (uint32_t)width, exact, worst) != 0) {
            fprintf(stderr, "rank %d case %d batch %d: mismatch (exact=%d, rel err %.3g)\n",
                    w->rank, cw->case_no, b, exact, *worst);
            cw->bad++;
        }
    }
    free(out);
    free(ref);
    return rc;
}

static int case_coordinate(void *arg, us_err *err)
{
    case_work *cw = arg;
    const check_case *cc = cw->cc;
    us_synth_view whole = {0};
    double worst = 0;
    bool all_exact = true;
    int rc = us_synth_view_build(&whole, &cw->spec, err);
    if (rc == US_OK)
        rc = case_batches(cw, &whole.view, &worst, &all_exact, err);
    us_synth_view_free(&whole);
    if (rc == US_OK && cw->w->coordinator_index == 0) {
        const us_lookup_stats *st = us_lookup_get_stats(cw->L);
        const us_rowcache *cache = us_lookup_cache(cw->L);
        printf("case %2d %-6s place=%-6s seed=%llu mode=%-4s dtype=%-4s groups=%u "
               "cache=%llu: push=%llu pull=%llu unique=%llu/%llu cache_hits=%llu "
               "max_rel_err=%.2e %s %s\n", cw->case_no, cw->t->provider,
               cc->place == US_PLACE_ROW ? "row" : "column",
               (unsigned long long)cc->placement_seed, mode_name(cc->mode),
               us_dtype_name(cc->dtype), cc->n_groups, (unsigned long long)cc->cache_bytes,
               (unsigned long long)st->push_batches, (unsigned long long)st->pull_batches,
               (unsigned long long)st->unique_rows, (unsigned long long)st->pairs,
               (unsigned long long)(cache ? cache->hits : 0), worst,
               all_exact ? "bit-exact" : "within-1e-5", cw->bad ? "FAIL" : "ok");
        fflush(stdout);
    }
    return rc;
}

/* Table 7 of ROWS x DIM synthetic rows (seed 42): its description and the
 * synthetic spec of this rank's part of it (shard 0's on the coordinator,
 * which never builds it). */
static void synth_table(const us_world *w, us_dtype dtype, uint64_t placement_seed,
                        us_placement_kind place, us_table_info *table, us_synth_spec *spec)
{
    *table = (us_table_info){ .table_id = 7, .rows = ROWS, .dim = DIM, .dtype = dtype,
                              .block_bits = BLOCK_BITS, .placement_seed = placement_seed,
                              .placement = place };
    *spec = (us_synth_spec){ .dtype = dtype, .synth_seed = 42, .table_id = 7, .rows = ROWS,
                             .dim = DIM, .block_bits = BLOCK_BITS,
                             .placement_seed = placement_seed,
                             .column = place == US_PLACE_COLUMN, .n_shards = w->n_shards,
                             .shard_index = w->is_shard ? w->shard_index : 0 };
}

static int run_case(const us_world *w, us_transport *t, const check_case *cc, int case_no,
                    us_err *err)
{
    us_table_info table;
    us_synth_spec spec;
    synth_table(w, cc->dtype, cc->placement_seed, cc->place, &table, &spec);
    us_synth_view local = {0};
    us_lookup *L = NULL;
    int rc = US_OK;
    if (w->is_shard && (rc = us_synth_view_build(&local, &spec, err)) != US_OK)
        return rc;
    us_lookup_opts opts = { .mode = cc->mode, .max_tokens = TOKENS, .max_k = K,
                            .n_groups = cc->n_groups, .cache_bytes = cc->cache_bytes,
                            .n_threads = 1 };
    rc = us_lookup_open(&L, w, t, &table, w->is_shard ? &local.view : NULL, &opts, err);
    case_work cw = { .w = w, .t = t, .cc = cc, .case_no = case_no, .L = L, .spec = spec };
    cw.spec.shard_index = -1;
    if (rc == US_OK)
        rc = us_job_run(w, us_lookup_engine(L), case_coordinate, &cw, err);
    us_synth_view_free(&local);
    if (rc == US_OK && cw.bad)
        rc = us_err_set(err, US_ECORRUPT, "case %d: %d batches differ from the reference",
                        case_no, cw.bad);
    return rc;
}

/* Product-key scoring feeding the lookup, pipelined: batch b+1 is scored
 * (kernels/score.h, one sgemm per head and side) while batch b's requests
 * are in flight between us_lookup_begin and the us_lookup_progress polls
 * that complete it. */
enum { H = 2, D = 16, NR = 50, NC = 60, KPRE = 8, KH = 4 };   /* NR * NC == ROWS */

typedef struct scored_work {
    const us_world *w;
    us_transport *t;
    int case_no;
    us_lookup *L;
    us_synth_spec spec;          /* shard_index -1: the whole table */
    int bad;
} scored_work;

static int scored_coordinate(void *arg, us_err *err)
{
    scored_work *sw = arg;
    us_synth_view whole = {0};
    int rc = us_synth_view_build(&whole, &sw->spec, err);
    if (rc != US_OK)
        return rc;
    us_pk_shape shape = { .n_tokens = TOKENS, .n_heads = H, .d_key = D, .n_rows = NR,
                          .n_cols = NC, .rank = 1, .n_cores = 1, .k_pre = KPRE, .k = KH,
                          .mode = US_PK_SUM, .activation = US_PK_ACT_SOFTMAX };
    static float k_row[H * NR * D], k_col[H * NC * D], q[TOKENS * H * 2 * D];
    static uint64_t idx[2][TOKENS * H * KH];
    static float wt[2][TOKENS * H * KH], out[TOKENS * DIM], ref[TOKENS * DIM];
    uint64_t s = 5;
    for (size_t i = 0; i < H * NR * D; i++)
        k_row[i] = (float)(rng_next(&s) >> 40) * 0x1p-24f - 0.5f;
    for (size_t i = 0; i < H * NC * D; i++)
        k_col[i] = (float)(rng_next(&s) >> 40) * 0x1p-24f - 0.5f;
    size_t ws_bytes = us_pk_workspace_bytes(&shape, 1);
    void *ws = malloc(ws_bytes);
    double worst = 0;
    uint64_t scored_rows_seen = 0;
    for (int b = 0; b <= BATCHES && rc == US_OK; b++) {
        /* score batch b (b == BATCHES: nothing left to score) ... */
        if (b < BATCHES) {
            uint64_t qs = (uint64_t)sw->case_no * 100 + (uint64_t)b * 7 +
                          (uint64_t)sw->w->coordinator_index;
            for (size_t i = 0; i < TOKENS * H * 2 * D; i++)
                q[i] = (float)(rng_next(&qs) >> 40) * 0x1p-24f - 0.5f;
            rc = us_pk_score(idx[b % 2], wt[b % 2], q, k_row, k_col, NULL, &shape, ws,
                             ws_bytes, 1, err);
            for (size_t i = 0; rc == US_OK && i < TOKENS * H * KH; i++)
                scored_rows_seen += idx[b % 2][i] < ROWS;
        }
        /* ... while batch b-1 is in flight; then finish it the way a service
         * loop would, polling without blocking */
        for (bool done = false; rc == US_OK && b > 0 && !done;) {
            rc = us_lookup_progress(sw->L, out, &done, err);
            if (rc == US_OK && !done)
                sched_yield();
        }
        if (rc == US_OK && b > 0) {
            int p = (b - 1) % 2;
            rc = us_gather_sum_ref(ref, &whole.view, idx[p], wt[p], TOKENS, H * KH, err);
            if (rc == US_OK && compare(out, ref, TOKENS, DIM, false, &worst) != 0)
                sw->bad++;
        }
        if (rc == US_OK && b < BATCHES) {
            us_lookup_batch batch = { TOKENS, H * KH, idx[b % 2], wt[b % 2], NULL };
            rc = us_lookup_begin(sw->L, &batch, err);
        }
    }
    free(ws);
    if (rc == US_OK && scored_rows_seen != (uint64_t)BATCHES * TOKENS * H * KH)
        sw->bad++;
    if (rc == US_OK && sw->w->coordinator_index == 0)
        printf("case %2d %-6s scored (PKM %dx%d keys, %d heads, top-%d, softmax) pipelined "
               "with begin/progress: %d batches, max_rel_err=%.2e %s\n", sw->case_no,
               sw->t->provider, NR, NC, H, KH, BATCHES, worst, sw->bad ? "FAIL" : "ok");
    us_synth_view_free(&whole);
    return rc;
}

static int run_scored(const us_world *w, us_transport *t, int case_no, us_err *err)
{
    us_table_info table;
    us_synth_spec spec;
    synth_table(w, US_DTYPE_F32, 1, US_PLACE_ROW, &table, &spec);
    us_synth_view local = {0};
    us_lookup *L = NULL;
    int rc;
    if (w->is_shard && (rc = us_synth_view_build(&local, &spec, err)) != US_OK)
        return rc;
    us_lookup_opts opts = { .mode = US_LOOKUP_AUTO, .max_tokens = TOKENS, .max_k = H * KH,
                            .n_threads = 1 };
    rc = us_lookup_open(&L, w, t, &table, w->is_shard ? &local.view : NULL, &opts, err);
    scored_work sw = { .w = w, .t = t, .case_no = case_no, .L = L, .spec = spec };
    sw.spec.shard_index = -1;
    if (rc == US_OK)
        rc = us_job_run(w, us_lookup_engine(L), scored_coordinate, &sw, err);
    us_synth_view_free(&local);
    if (rc == US_OK && sw.bad)
        rc = us_err_set(err, US_ECORRUPT, "scored case: %d checks failed", sw.bad);
    return rc;
}

/* Two lookups on one transport as one round engine: shards run both tables'
 * rounds in the coordinators' order until each has stopped. */
static int pair_serve(void *self, us_err *err)
{
    us_lookup **L = self;
    int rc = US_OK;
    while (rc == US_OK && !(us_lookup_stopped(L[0]) && us_lookup_stopped(L[1])))
        for (int i = 0; i < 2 && rc == US_OK; i++)
            if (!us_lookup_stopped(L[i]))
                rc = us_lookup_run(L[i], NULL, NULL, err);
    return rc;
}

static int pair_finish(void *self, us_err *err)
{
    us_lookup **L = self;
    int rc = US_OK;
    for (int i = 0; i < 2 && rc == US_OK; i++)
        rc = us_lookup_finish(L[i], err);
    return rc;
}

static void pair_close(void *self)
{
    us_lookup **L = self;
    for (int i = 0; i < 2; i++) {
        us_lookup_close(L[i]);
        L[i] = NULL;
    }
}

static const us_round_engine_ops pair_engine_ops = {
    .name = "two-table", .serve = pair_serve, .finish = pair_finish, .close = pair_close,
};

typedef struct pair_work {
    const us_world *w;
    us_transport *t;
    int case_no;
    us_lookup **L;
    us_synth_view *whole;        /* [2] */
    int bad;
} pair_work;

static int pair_coordinate(void *arg, us_err *err)
{
    pair_work *pw = arg;
    us_transport *t = pw->t;
    uint64_t rows[TOKENS * K], reads[2] = { 0, 0 };
    float wts[TOKENS * K], out[TOKENS * DIM], ref[TOKENS * DIM];
    uint8_t grp[TOKENS * K];
    double worst = 0;
    int rc = US_OK;
    for (int b = 0; b < BATCHES && rc == US_OK; b++)
        for (int i = 0; i < 2 && rc == US_OK; i++) {
            make_batch(9000u + (uint64_t)b * 2 + (uint64_t)i, rows, wts, grp, 1);
            us_lookup_batch batch = { TOKENS, K, rows, wts, NULL };
            uint64_t before = t->stats.rma_reads;
            if ((rc = us_lookup_run(pw->L[i], &batch, out, err)) != US_OK ||
                (rc = us_gather_sum_ref(ref, &pw->whole[i].view, rows, wts, TOKENS, K,
                                        err)) != US_OK)
                break;
            reads[i] += t->stats.rma_reads - before;
            if (compare(out, ref, TOKENS, DIM, true, &worst) != 0)
                pw->bad++;
        }
    if (reads[1] != 0)   /* the second table cannot read one-sided */
        pw->bad++;
    bool remote_shards = pw->w->n_shards > 1 || !pw->w->is_shard;
    if (t->rma_ready && remote_shards && reads[0] == 0)
        pw->bad++;
    if (rc == US_OK && pw->w->coordinator_index == 0)
        printf("case %2d %-6s two tables on one transport (f32 + bf16, pull): one-sided "
               "reads %llu / %llu, bit-exact %s\n", pw->case_no, t->provider,
               (unsigned long long)reads[0], (unsigned long long)reads[1],
               pw->bad ? "FAIL" : "ok");
    return rc;
}

/* Two tables through one transport at once (every rank interleaves their
 * rounds identically): the first lookup owns the transport's one-sided
 * exposure, the second must pull with ROWS messages, and both stay exact. */
static int run_two_tables(const us_world *w, us_transport *t, int case_no, us_err *err)
{
    us_synth_spec spec[2] = {
        { .dtype = US_DTYPE_F32, .synth_seed = 42, .table_id = 7, .rows = ROWS, .dim = DIM,
          .block_bits = BLOCK_BITS, .placement_seed = 1 },
        { .dtype = US_DTYPE_BF16, .synth_seed = 43, .table_id = 9, .rows = ROWS, .dim = DIM,
          .block_bits = BLOCK_BITS, .placement_seed = 0x5eed },
    };
    us_synth_view local[2], whole[2];
    memset(local, 0, sizeof local);
    memset(whole, 0, sizeof whole);
    us_lookup *L[2] = { NULL, NULL };
    int rc = US_OK;
    for (int i = 0; i < 2 && rc == US_OK; i++) {
        spec[i].n_shards = w->n_shards;
        spec[i].shard_index = w->is_shard ? w->shard_index : 0;
        us_table_info table = { .table_id = spec[i].table_id, .rows = ROWS, .dim = DIM,
                                .dtype = spec[i].dtype, .block_bits = BLOCK_BITS,
                                .placement_seed = spec[i].placement_seed,
                                .placement = US_PLACE_ROW };
        us_lookup_opts opts = { .mode = US_LOOKUP_PULL, .max_tokens = TOKENS, .max_k = K,
                                .n_threads = 1 };
        if (w->is_shard)
            rc = us_synth_view_build(&local[i], &spec[i], err);
        if (rc == US_OK)
            rc = us_lookup_open(&L[i], w, t, &table, w->is_shard ? &local[i].view : NULL,
                                &opts, err);
        spec[i].shard_index = -1;
        if (rc == US_OK && w->is_coordinator)
            rc = us_synth_view_build(&whole[i], &spec[i], err);
    }
    pair_work pw = { .w = w, .t = t, .case_no = case_no, .L = L, .whole = whole };
    if (rc == US_OK)
        rc = us_job_run(w, (us_round_engine){ &pair_engine_ops, L }, pair_coordinate, &pw, err);
    else
        pair_close(L);
    for (int i = 0; i < 2; i++) {
        us_synth_view_free(&local[i]);
        us_synth_view_free(&whole[i]);
    }
    if (rc == US_OK && pw.bad)
        rc = us_err_set(err, US_ECORRUPT, "two-table case: %d checks failed", pw.bad);
    return rc;
}

/* --- a real store (shard/store.h) ---------------------------------------- */

/* The coordinator's side of one store case: mode m's batches against the
 * whole store (opened once, on first use). */
typedef struct store_work {
    const us_world *w;
    us_transport *t;
    const char *dir, *name;
    int case_no, m;
    us_lookup_mode mode;
    size_t ti;                   /* the table's index in the store */
    const us_table_info *table;
    us_store_opts so;
    us_store **all;              /* every shard file (opened by the first case) */
    us_lookup *L;
    int bad;
} store_work;

static int store_coordinate(void *arg, us_err *err)
{
    store_work *sw = arg;
    const us_table_info *table = sw->table;
    us_rows_view whole;
    int rc = US_OK;
    if (*sw->all == NULL) {
        sw->so.shard_index = US_STORE_ALL_SHARDS;
        if ((rc = us_store_open(sw->dir, &sw->so, sw->all, err)) != US_OK)
            return rc;
    }
    if ((rc = us_store_view(*sw->all, sw->ti, &whole, err)) != US_OK)
        return rc;
    uint64_t rows[TOKENS * K];
    float wts[TOKENS * K];
    uint8_t grp[TOKENS * K];
    float *out = malloc(TOKENS * table->dim * sizeof(float));
    float *ref = malloc(TOKENS * table->dim * sizeof(float));
    double worst = 0;
    for (int b = 0; b < BATCHES && rc == US_OK; b++) {
        make_batch(5000u + (uint64_t)sw->m * 10 + (uint64_t)b, rows, wts, grp, 1);
        for (uint32_t p = 0; p < TOKENS * K; p++)
            rows[p] %= table->rows;
        us_lookup_batch batch = { TOKENS, K, rows, wts, NULL };
        if ((rc = us_lookup_run(sw->L, &batch, out, err)) != US_OK ||
            (rc = us_gather_sum_ref(ref, &whole, rows, wts, TOKENS, K, err)) != US_OK)
            break;
        bool exact = us_lookup_last_mode(sw->L) == US_LOOKUP_PULL;
        if (compare(out, ref, TOKENS, table->dim, exact, &worst) != 0)
            sw->bad++;
    }
    free(out);
    free(ref);
    if (rc == US_OK && sw->w->coordinator_index == 0)
        printf("case %2d %-6s store %s table %s (%s, %llu x %u, %u shards) mode=%s: "
               "max_rel_err=%.2e %s\n", sw->case_no + sw->m, sw->t->provider, sw->dir,
               sw->name, us_dtype_name(table->dtype), (unsigned long long)table->rows,
               table->dim, sw->w->n_shards, mode_name(sw->mode), worst,
               sw->bad ? "FAIL" : "ok");
    return rc;
}

/* Each shard serves its blocks straight from its mmap-ed shard file;
 * coordinator 0 checks against a gather over the whole store (all shard
 * files opened): push (within 1e-5), pull (bit-exact) and auto. */
static int run_store(const us_world *w, us_transport *t, const char *dir, const char *name,
                     int case_no, us_err *err)
{
    us_store *mine = NULL, *all = NULL;
    int rc;
    us_store_opts so = { .backend = US_BACKEND_MMAP, .expect_shards = w->n_shards,
                         .shard_index = w->is_shard ? w->shard_index : US_STORE_ALL_SHARDS };
    if ((rc = us_store_open(dir, &so, &mine, err)) != US_OK)
        return rc;
    size_t ti;
    us_rows_view local;
    store_work sw = { .w = w, .t = t, .dir = dir, .name = name, .case_no = case_no,
                      .so = so, .all = &all };
    if ((rc = us_store_find_table(mine, name, &ti, err)) != US_OK ||
        (rc = us_store_view(mine, ti, &local, err)) != US_OK)
        goto done;
    const us_table_layout *lay = &us_store_manifest(mine)->tables[ti];
    us_table_info table = { .table_id = lay->table_id, .rows = lay->rows, .dim = lay->dim,
                            .dtype = lay->dtype, .block_bits = lay->block_bits,
                            .placement_seed = lay->placement_seed, .placement = US_PLACE_ROW };
    if (table.dim > 4096 || table.rows < 1) {
        rc = us_err_set(err, US_EINVAL, "store table %s: dim %u too large for this check",
                        name, table.dim);
        goto done;
    }
    sw.ti = ti;
    sw.table = &table;
    static const us_lookup_mode modes[3] = { US_LOOKUP_PUSH, US_LOOKUP_PULL, US_LOOKUP_AUTO };
    for (int m = 0; m < 3 && rc == US_OK; m++) {
        us_lookup_opts opts = { .mode = modes[m], .max_tokens = TOKENS, .max_k = K,
                                .n_threads = 1 };
        if ((rc = us_lookup_open(&sw.L, w, t, &table, w->is_shard ? &local : NULL, &opts,
                                 err)) != US_OK)
            break;
        sw.m = m;
        sw.mode = modes[m];
        rc = us_job_run(w, us_lookup_engine(sw.L), store_coordinate, &sw, err);
    }
done:
    us_store_close(all);
    us_store_close(mine);
    if (rc == US_OK && sw.bad)
        rc = us_err_set(err, US_ECORRUPT, "store cases: %d batches differ", sw.bad);
    return rc;
}

/* --- malformed and out-of-range requests ------------------------------ */

/* A valid PUSH request: tokens 0..n_tok-1, pairs given in token order. */
static uint64_t build_req(us_wire_buf *buf, uint32_t table_id, const uint64_t *rows,
                          uint32_t n_rows, const uint32_t *tok, const uint32_t *ref,
                          const float *wt, uint32_t n_pairs, uint32_t n_tok, uint64_t *off)
{
    uint64_t bytes = us_wire_req_bytes(n_rows, n_pairs, 0);
    us_wire_req r;
    us_err e;
    if (us_wire_buf_append(buf, bytes, off, &e) != US_OK ||
        us_wire_req_init(buf->data + *off, bytes, &(us_wire_req_desc){
                             .mode = US_WIRE_PUSH, .table_id = table_id, .batch_id = 99,
                             .n_tokens = n_tok, .n_rows = n_rows, .n_pairs = n_pairs,
                             .n_groups = 1 }, &r, &e) != US_OK)
        return 0;
    memcpy((void *)r.rows, rows, n_rows * 8u);
    memcpy((void *)r.pair_token, tok, n_pairs * 4u);
    memcpy((void *)r.pair_ref, ref, n_pairs * 4u);
    memcpy((void *)r.pair_weight, wt, n_pairs * 4u);
    return bytes;
}

/* First `n` rows held by shard s (row placement), starting at row `from`;
 * or, with `other`, rows NOT held by s. */
static void rows_of_shard(const us_table_info *t, int n_shards, int s, bool other,
                          uint64_t *out, int n)
{
    int got = 0;
    for (uint64_t row = 0; row < t->rows && got < n; row += 7) {
        int owner = us_placement_shard(t->table_id, row >> t->block_bits,
                                       t->placement_seed, n_shards);
        if ((owner == s) != other)
            out[got++] = row;
    }
    for (; got < n; got++)
        out[got] = t->rows + 1000;   /* cannot happen for the sizes used here */
}

enum { BAD_MAGIC, BAD_LENGTH, BAD_ROW_RANGE, BAD_ROW_NOT_HELD, BAD_TABLE, BAD_ORDER,
       BAD_WEIGHT, N_BAD };
static const char *const bad_names[N_BAD] = { "bad magic", "truncated", "row out of range",
    "row not held", "wrong table", "unsorted tokens", "NaN weight" };

/* Coordinator 0 sends the broken requests; the others run idle rounds. */
typedef struct malformed_work {
    const us_world *w;
    const us_table_info *table;
    us_synth_spec spec;          /* shard_index -1: the whole table */
    us_lookup *L;
    int bad;
} malformed_work;

static int malformed_coordinate(void *arg, us_err *err)
{
    malformed_work *mw = arg;
    const us_world *w = mw->w;
    const us_table_info table = *mw->table;
    us_lookup *L = mw->L;
    us_synth_view whole = {0};
    us_wire_buf buf = {0};
    int bad = 0, S = w->n_shards;
    int rc = us_synth_view_build(&whole, &mw->spec, err);
    if (rc != US_OK)
        return rc;
    uint64_t *off = calloc((size_t)S, sizeof *off), *len = calloc((size_t)S, sizeof *len);
    for (int kind = 0; kind < N_BAD && rc == US_OK; kind++) {
        if (w->coordinator_index != 0) {      /* others: idle rounds in step */
            rc = us_lookup_run(L, NULL, NULL, err);
            continue;
        }
        buf.len = 0;
        /* every shard: 3 of its rows, token 0 takes rows 0,1; token 1 rows 1,2 */
        uint32_t tok[4] = { 0, 0, 1, 1 }, ref[4] = { 0, 1, 1, 2 };
        float wt[4] = { 0.5f, -1.25f, 2.0f, 0.75f };
        for (int s = 0; s < S; s++) {
            uint64_t rows[3];
            rows_of_shard(&table, S, s, false, rows, 3);
            if (s == 0 && kind == BAD_ROW_RANGE)
                rows[1] = ROWS + 5;
            if (s == 0 && kind == BAD_ROW_NOT_HELD) {
                if (S > 1)
                    rows_of_shard(&table, S, 0, true, &rows[2], 1);
                else
                    ref[3] = 3;   /* one shard holds all: a bad row index instead */
            }
            uint32_t t2[4];
            memcpy(t2, tok, sizeof tok);
            if (s == 0 && kind == BAD_ORDER) {
                t2[1] = 1;
                t2[2] = 0;
            }
            float w2[4];
            memcpy(w2, wt, sizeof wt);
            if (s == 0 && kind == BAD_WEIGHT)
                w2[2] = NAN;
            len[s] = build_req(&buf, (s == 0 && kind == BAD_TABLE) ? 8 : 7, rows, 3, t2, ref,
                               w2, 4, 2, &off[s]);
            ref[3] = 2;
            us_wire_req_hdr *h = (us_wire_req_hdr *)(buf.data + off[s]);
            if (s == 0 && kind == BAD_MAGIC)
                h->magic ^= 0x01000000u;
            if (s == 0 && kind == BAD_LENGTH)
                len[s] -= 8;
        }
        if ((rc = us_lookup_raw_round(L, buf.data, off, len, err)) != US_OK)
            break;
        static const int want_code[N_BAD] = { US_EPROTO, US_EPROTO, US_ERANGE, US_ENOTFOUND,
                                              US_ENOTFOUND, US_EPROTO, US_EPROTO };
        for (int s = 0; s < S; s++) {
            uint64_t alen;
            const void *ans = us_lookup_raw_answer(L, s, &alen);
            us_wire_resp resp;
            us_err e = {0};
            const us_wire_req_hdr *asked = (const us_wire_req_hdr *)(buf.data + off[s]);
            if (us_wire_resp_parse(ans, alen, &(us_wire_resp_expect){ asked, DIM, 4, 0 },
                                   &resp, &e) != US_OK) {
                fprintf(stderr, "malformed %s: shard %d answer unreadable: %s\n",
                        bad_names[kind], s, e.msg);
                bad++;
                continue;
            }
            if (s == 0) {
                int want = (kind == BAD_ROW_NOT_HELD && S == 1) ? US_EPROTO : want_code[kind];
                if (resp.hdr->status != want) {
                    fprintf(stderr, "malformed %s: shard 0 status %d, want %d\n",
                            bad_names[kind], resp.hdr->status, want);
                    bad++;
                } else if (w->rank == 0) {
                    printf("malformed %-17s -> shard 0 answers %s: %.*s\n", bad_names[kind],
                           us_code_name(resp.hdr->status), (int)resp.message_len,
                           resp.message);
                }
                continue;
            }
            /* a good shard in the same round: exact sums */
            uint64_t rows[3], prow[4];
            rows_of_shard(&table, S, s, false, rows, 3);
            for (int p = 0; p < 4; p++)
                prow[p] = rows[ref[p]];
            float want[2 * DIM];
            us_gather_sum_ref(want, &whole.view, prow, wt, 2, 2, &e);
            if (resp.hdr->status != US_OK || memcmp(resp.sums, want, sizeof want) != 0) {
                fprintf(stderr, "malformed %s: good shard %d answered wrong\n",
                        bad_names[kind], s);
                bad++;
            }
        }
    }
    free(off);
    free(len);
    /* afterwards an ordinary batch works everywhere */
    if (rc == US_OK) {
        uint64_t rows[TOKENS * K];
        float wts[TOKENS * K], out[TOKENS * DIM], ref[TOKENS * DIM];
        uint8_t grp[TOKENS * K];
        make_batch(777 + (uint64_t)w->coordinator_index, rows, wts, grp, 1);
        us_lookup_batch b = { TOKENS, K, rows, wts, NULL };
        double worst = 0;
        if ((rc = us_lookup_run(L, &b, out, err)) == US_OK &&
            (rc = us_gather_sum_ref(ref, &whole.view, rows, wts, TOKENS, K, err)) == US_OK &&
            compare(out, ref, TOKENS, DIM, false, &worst) != 0)
            bad++;
        /* and a batch the coordinator itself refuses (row out of range) is an
         * error for that batch only */
        rows[3] = ROWS;
        us_err e = {0};
        if (rc == US_OK && us_lookup_run(L, &b, out, &e) != US_ERANGE) {
            fprintf(stderr, "out-of-range batch not refused: %s\n", e.msg);
            bad++;
        }
        if (rc == US_OK && w->rank == 0)
            printf("after malformed rounds: normal batch max_rel_err=%.2e; out-of-range "
                   "batch refused: %s\n", worst, e.msg);
    }
    us_wire_buf_free(&buf);
    us_synth_view_free(&whole);
    mw->bad = bad;
    return rc;
}

static int run_malformed(const us_world *w, us_transport *t, us_err *err)
{
    us_table_info table;
    us_synth_spec spec;
    synth_table(w, US_DTYPE_F32, 1, US_PLACE_ROW, &table, &spec);
    us_synth_view local = {0};
    us_lookup *L = NULL;
    int rc = US_OK;
    if (w->is_shard && (rc = us_synth_view_build(&local, &spec, err)) != US_OK)
        return rc;
    us_lookup_opts opts = { .mode = US_LOOKUP_PUSH, .max_tokens = TOKENS, .max_k = K,
                            .n_threads = 1 };
    rc = us_lookup_open(&L, w, t, &table, w->is_shard ? &local.view : NULL, &opts, err);
    malformed_work mw = { .w = w, .table = &table, .spec = spec, .L = L };
    mw.spec.shard_index = -1;
    if (rc == US_OK)
        rc = us_job_run(w, us_lookup_engine(L), malformed_coordinate, &mw, err);
    us_synth_view_free(&local);
    if (rc == US_OK && mw.bad)
        rc = us_err_set(err, US_ECORRUPT, "%d malformed-request checks failed", mw.bad);
    return rc;
}

int main(int argc, char **argv)
{
    const char *transport = "mpi";
    us_world_opts wopts = {0};
    bool quick = false, malformed = false;
    const char *store_dir = NULL, *store_table = "0";
    static const struct option lo[] = {
        { "transport", required_argument, 0, 't' }, { "coordinators", required_argument, 0, 'c' },
        { "all-roles", no_argument, 0, 'a' }, { "quick", no_argument, 0, 'q' },
        { "malformed", no_argument, 0, 'm' }, { "dump", required_argument, 0, 'd' },
        { "store", required_argument, 0, 's' }, { "table", required_argument, 0, 'T' },
        { 0, 0, 0, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 't': transport = optarg; break;
        case 'c': wopts.coordinators = atoi(optarg); break;
        case 'a': wopts.all_roles = true; break;
        case 'q': quick = true; break;
        case 'm': malformed = true; break;
        case 'd': g_dump_dir = optarg; break;
        case 's': store_dir = optarg; break;
        case 'T': store_table = optarg; break;
        default: fprintf(stderr, "lookup_check: bad option\n"); return 2;
        }
    }
    us_world w;
    us_err err = {0};
    if (us_world_init(&w, &argc, &argv, &wopts, &err) != US_OK) {
        fprintf(stderr, "lookup_check: %s\n", err.msg);
        return 1;
    }
    us_table_info sizing = { .dim = DIM, .dtype = US_DTYPE_F32 };
    us_lookup_opts sizing_opts = { .max_tokens = TOKENS, .max_k = K, .n_groups = 4 };
    us_transport_opts topts = {
        .max_msg_bytes = us_lookup_max_msg_bytes(&sizing, &sizing_opts, w.n_shards) };
    us_transport *t = NULL;
    if (us_transport_open(transport, &w, &topts, &t, &err) != US_OK) {
        fprintf(stderr, "lookup_check: rank %d: %s\n", w.rank, err.msg);
        us_world_abort(&w, &err);
    }
    int failed = 0, n_cases = 0;
    if (store_dir != NULL) {
        if (run_store(&w, t, store_dir, store_table, 0, &err) != US_OK) {
            fprintf(stderr, "lookup_check: rank %d: store: %s\n", w.rank, err.msg);
            failed++;
            us_world_abort(&w, &err);
        }
        n_cases += 3;
    } else if (malformed) {
        if (run_malformed(&w, t, &err) != US_OK) {
            fprintf(stderr, "lookup_check: rank %d: malformed: %s\n", w.rank, err.msg);
            failed++;
        }
        n_cases++;
    } else {
        static const us_dtype dtypes[] = { US_DTYPE_F32, US_DTYPE_BF16, US_DTYPE_INT8,
                                           US_DTYPE_F16 };
        for (int place = 0; place < 2; place++)
            for (int seed = 0; seed < 2; seed++)
                for (int mode = 0; mode < 3; mode++) {
                    if (quick && mode == 2)   /* 0 push, 1 pull, 2 auto */
                        continue;
                    int variant = place * 6 + seed * 3 + mode;
                    check_case cc = {
                        .place = (us_placement_kind)place,
                        .placement_seed = seed ? 0x5eedull : 1,
                        .mode = (us_lookup_mode)(mode == 0 ? US_LOOKUP_PUSH
                                                : mode == 1 ? US_LOOKUP_PULL : US_LOOKUP_AUTO),
                        .dtype = dtypes[variant % 4],
                        .n_groups = variant % 3 == 1 ? 4 : 1,
                        .cache_bytes = (variant == 0 || variant == 2 || variant == 7 ||
                                        variant == 9) ? 4096 : 0,
                    };
                    if (run_case(&w, t, &cc, n_cases, &err) != US_OK) {
                        fprintf(stderr, "lookup_check: rank %d: case %d: %s\n", w.rank,
                                n_cases, err.msg);
                        failed++;
                        us_world_abort(&w, &err); /* other ranks may wait in a round */
                    }
                    n_cases++;
                }
    }
    if (!malformed && store_dir == NULL) {
        if (run_scored(&w, t, n_cases, &err) != US_OK) {
            fprintf(stderr, "lookup_check: rank %d: scored case: %s\n", w.rank, err.msg);
            failed++;
            us_world_abort(&w, &err);
        }
        n_cases++;
        if (run_two_tables(&w, t, n_cases, &err) != US_OK) {
            fprintf(stderr, "lookup_check: rank %d: two tables: %s\n", w.rank, err.msg);
            failed++;
            us_world_abort(&w, &err);
        }
        n_cases++;
    }
    int total = 0;
    MPI_Allreduce(&failed, &total, 1, MPI_INT, MPI_SUM, w.comm);
    const us_transport_stats *st = &t->stats;
    if (w.rank == 0)
        printf("lookup_check %s: %d cases, %d ranks (%d coordinators, %d shards), "
               "transport %s (%s), rank 0 sent %llu msgs / %llu bytes, %llu reads, %llu mapped\n",
               total ? "FAILED" : "ok", n_cases, w.size, w.n_coordinators, w.n_shards,
               t->ops->name, t->provider, (unsigned long long)st->msgs_sent,
               (unsigned long long)st->bytes_sent, (unsigned long long)st->rma_reads,
               (unsigned long long)st->rma_mapped);
    us_transport_close(t);
    us_world_finalize(&w);
    return total ? 1 : 0;
}
