/*
 * cmd_bench.c — `ultrashard bench lookup`: the distributed lookup measured
 * against the single-process gather of the same batches, in the same run.
 *
 * Every shard materialises its part of a synthetic table once per placement
 * (shard/synth_view.h); coordinator 0 also builds the whole table for the
 * baseline and the correctness check. For each (transport, placement, mode)
 * all ranks open a lookup, run 2 warm-up batches and B timed batches (each
 * followed on coordinator 0 by the single-process gather of the same batch,
 * timed apart: the baseline, interleaved so both see the same machine
 * load), and coordinator 0 prints one JSON line: tokens/s, rows/s (pairs gathered),
 * bytes sent and received per token and messages (+ one-sided reads) per
 * batch as seen by coordinator 0, p50/p99 batch latency, the baseline's
 * tokens/s and the ratio, the max relative error against the baseline, and
 * memory (largest shard view, whole table, peak RSS of rank 0).
 */
#include "coordinator/cli/cmd_bench.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "coordinator/cli/cli.h"
#include "coordinator/lookup/lookup.h"
#include "kernels/gather.h"
#include "kernels/hash.h"
#include "shard/synth_view.h"

typedef struct bench_opts {
    char transports[64], modes[64], placements[64];
    uint64_t rows;
    uint32_t dim, tokens, k, batches;
    us_dtype dtype;
    double hot;
    double zipf;                 /* > 0: keys by Zipf(zipf) rank instead of the hot set */
    int threads;
    uint64_t cache_bytes;
    double read_us;              /* cost model: one-sided read cost (< 0: default) */
} bench_opts;

typedef struct bench_result {
    char transport[16], provider[64], placement[8], mode[12];
    double tokens_per_s, rows_per_s, sent_per_token, recv_per_token, msgs_per_batch;
    double p50_ms, p99_ms, base_tokens_per_s, ratio, max_rel_err;
    uint64_t push_batches, pull_batches;
    double cache_hit_rate;       /* -1: no cache */
} bench_result;

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

static void make_batch(const bench_opts *o, uint64_t seed, uint64_t *rows, float *w)
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

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_s(void) { return MPI_Wtime(); }

/* One configuration, collectively. Coordinator 0 fills *res. */
static int bench_one(const us_world *w, us_transport *t, const bench_opts *o,
                     const us_table_info *table, const us_rows_view *local,
                     const us_rows_view *whole, us_lookup_mode mode, bool pull_by_messages,
                     bench_result *res, us_err *err)
{
    us_lookup_opts lo = { .mode = mode, .max_tokens = o->tokens, .max_k = o->k,
                          .n_threads = o->threads, .cache_bytes = o->cache_bytes,
                          .pull_by_messages = pull_by_messages };
    if (o->read_us >= 0) {
        lo.cost = us_cost_params_default();
        lo.cost.read_us = o->read_us;
    }
    us_lookup *L = NULL;
    int rc = us_lookup_open(&L, w, t, table, w->is_shard ? local : NULL, &lo, err);
    if (rc != US_OK)
        return rc;
    if (!w->is_coordinator) {
        rc = us_lookup_serve(L, err);
        us_lookup_close(L);
        return rc;
    }
    uint64_t n = (uint64_t)o->tokens * o->k;
    size_t out_floats = (size_t)o->tokens * table->dim;
    uint64_t *rows = malloc(n * sizeof *rows);
    float *wt = malloc(n * sizeof *wt);
    float *out = malloc(out_floats * sizeof *out), *ref = malloc(out_floats * sizeof *ref);
    double *lat = calloc(o->batches, sizeof *lat);
    if (!rows || !wt || !out || !ref || !lat) {
        rc = us_err_set(err, US_ENOMEM, "bench: batch buffers");
        goto done;
    }
    us_transport_stats before = t->stats;
    double t0 = 0, max_rel = 0, base = 0, base_in_wall = 0;
    for (uint32_t b = 0; b < o->batches + 2 && rc == US_OK; b++) {
        if (b == 2) {      /* after warm-up */
            before = t->stats;
            t0 = now_s();
        }
        make_batch(o, 1000u * (uint64_t)w->coordinator_index + b, rows, wt);
        us_lookup_batch batch = { o->tokens, o->k, rows, wt, NULL };
        double s = now_s();
        rc = us_lookup_run(L, &batch, out, err);
        if (b >= 2)
            lat[b - 2] = now_s() - s;
        /* baseline interleaved batch by batch: the shared box's load then
         * affects both sides alike (ratios, not absolute times) */
        if (rc == US_OK && b >= 2 && whole != NULL) {
            double b0 = now_s();
            rc = us_gather_sum(ref, whole, rows, wt, o->tokens, o->k, o->threads, err);
            base += now_s() - b0;
        }
        if (rc == US_OK && b == 0 && whole != NULL) {
            rc = us_gather_sum(ref, whole, rows, wt, o->tokens, o->k, o->threads, err);
            for (uint32_t tok = 0; rc == US_OK && tok < o->tokens; tok++) {
                double mr = 0, md = 0;
                for (uint32_t c = 0; c < table->dim; c++) {
                    size_t i = (size_t)tok * table->dim + c;
                    mr = fmax(mr, fabs(ref[i]));
                    md = fmax(md, fabs((double)out[i] - ref[i]));
                }
                max_rel = fmax(max_rel, mr > 0 ? md / mr : md);
            }
        }
    }
    base_in_wall = base;
    double wall = now_s() - t0 - base_in_wall;   /* distributed time only */
    us_transport_stats after = t->stats;   /* before the STOP rounds of finish */
    if (rc == US_OK)
        rc = us_lookup_finish(L, err);
    if (rc != US_OK)
        goto done;
    const us_lookup_stats *st = us_lookup_get_stats(L);
    double tokens = (double)o->tokens * o->batches;
    qsort(lat, o->batches, sizeof *lat, cmp_double);
    res->tokens_per_s = tokens / wall;
    res->rows_per_s = tokens * o->k / wall;
    res->sent_per_token = (double)(after.bytes_sent - before.bytes_sent) / tokens;
    res->recv_per_token = (double)(after.bytes_recv - before.bytes_recv +
                                   after.rma_bytes - before.rma_bytes) / tokens;
    res->msgs_per_batch = (double)(after.msgs_sent - before.msgs_sent +
                                   after.msgs_recv - before.msgs_recv +
                                   after.rma_reads - before.rma_reads) / o->batches;
    res->p50_ms = lat[o->batches / 2] * 1e3;
    res->p99_ms = lat[(size_t)((o->batches - 1) * 0.99)] * 1e3;
    res->base_tokens_per_s = base > 0 ? tokens / base : 0;
    res->ratio = base > 0 ? res->tokens_per_s / res->base_tokens_per_s : 0;
    res->max_rel_err = max_rel;
    res->push_batches = st->push_batches;
    const us_rowcache *cache = us_lookup_cache(L);
    res->cache_hit_rate = cache == NULL ? -1
        : (double)cache->hits / (double)(cache->hits + cache->misses > 0
                                         ? cache->hits + cache->misses : 1);
    res->pull_batches = st->pull_batches;
done:
    free(rows);
    free(wt);
    free(out);
    free(ref);
    free(lat);
    us_lookup_close(L);
    return rc;
}

static int parse_opts(int argc, char **argv, bench_opts *o, us_world_opts *wo)
{
    const us_command *cmd = us_command_find("bench");
    static const struct option lo[] = {
        { "transports", 1, 0, 'T' }, { "modes", 1, 0, 'M' }, { "placements", 1, 0, 'P' },
        { "rows", 1, 0, 'r' }, { "dim", 1, 0, 'd' }, { "dtype", 1, 0, 'y' },
        { "tokens", 1, 0, 't' }, { "k", 1, 0, 'k' }, { "batches", 1, 0, 'b' },
        { "hot", 1, 0, 'o' }, { "zipf", 1, 0, 'Z' }, { "threads", 1, 0, 'n' }, { "cache-bytes", 1, 0, 'c' },
        { "coordinators", 1, 0, 'C' }, { "all-roles", 0, 0, 'A' }, { "help", 0, 0, 'h' },
        { "read-us", 1, 0, 'R' },
        { 0, 0, 0, 0 },
    };
    us_err e = {0};
    int ch;
    long v;
    double d;
    optind = 2;   /* argv[1] is the benchmark name */
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'T': snprintf(o->transports, sizeof o->transports, "%s", optarg); break;
        case 'M': snprintf(o->modes, sizeof o->modes, "%s", optarg); break;
        case 'P': snprintf(o->placements, sizeof o->placements, "%s", optarg); break;
        case 'y':
            if (us_dtype_parse(optarg, &o->dtype) != 0)
                return us_cli_usage_error(cmd, "--dtype: unknown '%s'", optarg);
            break;
#define LONGOPT(c, name, lo_, hi_, dst) \
        case c: \
            if (us_cli_parse_long(name, optarg, lo_, hi_, &v, &e)) \
                return us_cli_usage_error(cmd, "%s", e.msg); \
            dst = v; \
            break;
        LONGOPT('r', "--rows", 1, 1l << 40, o->rows)
        LONGOPT('d', "--dim", 1, 65536, o->dim)
        LONGOPT('t', "--tokens", 1, 1 << 20, o->tokens)
        LONGOPT('k', "--k", 1, 4096, o->k)
        LONGOPT('b', "--batches", 1, 1 << 20, o->batches)
        LONGOPT('n', "--threads", 1, 256, o->threads)
        LONGOPT('c', "--cache-bytes", 0, 1l << 40, o->cache_bytes)
        LONGOPT('C', "--coordinators", 1, 1 << 20, wo->coordinators)
#undef LONGOPT
        case 'o':
            if (us_cli_parse_double("--hot", optarg, 0, 1, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->hot = d;
            break;
        case 'Z':
            if (us_cli_parse_double("--zipf", optarg, 0, 10, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->zipf = d;
            break;
        case 'R':
            if (us_cli_parse_double("--read-us", optarg, 0, 1e6, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->read_us = d;
            break;
        case 'A': wo->all_roles = true; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default: return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return -1;
}

static void print_result(const us_world *w, const bench_opts *o, const bench_result *r,
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
           "\"max_rel_err\":%.3g,\"cache_hit_rate\":%.4f,\"shard_view_bytes_max\":%llu,\"whole_table_bytes\":%llu,"
           "\"rank0_maxrss_kib\":%ld}\n",
           r->transport, r->provider, r->placement, r->mode, w->size, w->n_coordinators,
           w->n_shards, (unsigned long long)o->rows, o->dim, us_dtype_name(o->dtype),
           o->tokens, o->k, o->batches, o->hot, o->zipf, (unsigned long long)r->push_batches,
           (unsigned long long)r->pull_batches, r->tokens_per_s, r->rows_per_s,
           r->sent_per_token, r->recv_per_token, r->msgs_per_batch, r->p50_ms, r->p99_ms,
           r->base_tokens_per_s, r->ratio, r->max_rel_err, r->cache_hit_rate, (unsigned long long)shard_bytes,
           (unsigned long long)whole_bytes, ru.ru_maxrss);
    fflush(stdout);
}

int us_cmd_bench(int argc, char **argv)
{
    const us_command *cmd = us_command_find("bench");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc >= 2) {
            fputs(cmd->usage, stdout);
            return 0;
        }
        return us_cli_usage_error(cmd, "missing benchmark name");
    }
    if (strcmp(argv[1], "lookup") != 0)
        return us_cli_usage_error(cmd, "unknown benchmark '%s'", argv[1]);
    bench_opts o = { .rows = 131072, .dim = 128, .tokens = 256, .k = 32, .batches = 20,
                     .dtype = US_DTYPE_F32, .hot = 0.2, .threads = 1, .read_us = -1 };
    snprintf(o.transports, sizeof o.transports, "mpi,fabric");
    snprintf(o.modes, sizeof o.modes, "push,pull,pullmsg");
    snprintf(o.placements, sizeof o.placements, "row,column");
    us_world_opts wo = {0};
    int st = parse_opts(argc, argv, &o, &wo);
    if (st >= 0)
        return st;

    us_world w;
    us_err err = {0};
    if (us_world_init(&w, &argc, &argv, &wo, &err) != US_OK)
        return us_cli_fail("bench", &err);
    bench_result results[32];
    int n_results = 0, status = 0;
    static const char *const tnames[2] = { "mpi", "fabric" };
    static const char *const pnames[2] = { "row", "column" };
    /* pullmsg: pull by ROWS messages even where one-sided reads exist */
    static const char *const mnames[4] = { "push", "pull", "pullmsg", "auto" };
    static const us_lookup_mode modes[4] = { US_LOOKUP_PUSH, US_LOOKUP_PULL, US_LOOKUP_PULL,
                                             US_LOOKUP_AUTO };
    for (int pi = 0; pi < 2 && status == 0; pi++) {
        if (!in_list(o.placements, pnames[pi]))
            continue;
        us_table_info table = { .table_id = 1, .rows = o.rows, .dim = o.dim, .dtype = o.dtype,
                                .block_bits = 12, .placement_seed = 7,
                                .placement = (us_placement_kind)pi };
        us_synth_spec spec = { .dtype = o.dtype, .synth_seed = 42, .table_id = 1,
                               .rows = o.rows, .dim = o.dim, .block_bits = 12,
                               .placement_seed = 7, .column = pi == 1,
                               .n_shards = w.n_shards,
                               .shard_index = w.is_shard ? w.shard_index : 0 };
        us_synth_view local = {0}, whole = {0};
        int rc = US_OK;
        if (w.is_shard)
            rc = us_synth_view_build(&local, &spec, &err);
        spec.shard_index = -1;
        if (rc == US_OK && w.rank == 0)
            rc = us_synth_view_build(&whole, &spec, &err);
        if (rc != US_OK)
            us_world_abort(&w, &err);
        unsigned long long mine = local.bytes, shard_max = 0;
        MPI_Reduce(&mine, &shard_max, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, w.comm);
        for (int ti = 0; ti < 2 && status == 0; ti++) {
            if (!in_list(o.transports, tnames[ti]))
                continue;
            us_lookup_opts sizing = { .max_tokens = o.tokens, .max_k = o.k };
            us_transport_opts topts = {
                .max_msg_bytes = us_lookup_max_msg_bytes(&table, &sizing, w.n_shards) };
            us_transport *t = NULL;
            if (us_transport_open(tnames[ti], &w, &topts, &t, &err) != US_OK) {
                if (w.rank == 0)
                    fprintf(stderr, "ultrashard bench: skipping transport %s: %s\n",
                            tnames[ti], err.msg);
                continue;
            }
            for (int mi = 0; mi < 4 && status == 0; mi++) {
                if (!in_list(o.modes, mnames[mi]) || (mi == 2 && strcmp(t->ops->name, "fabric") != 0))
                    continue;
                bench_result r = {0};
                if (bench_one(&w, t, &o, &table, &local.view, w.rank == 0 ? &whole.view : NULL,
                              modes[mi], mi == 2, &r, &err) != US_OK) {
                    fprintf(stderr, "ultrashard bench: rank %d: %s\n", w.rank, err.msg);
                    us_world_abort(&w, &err);
                }
                if (w.rank == 0 && n_results < 32) {
                    snprintf(r.transport, sizeof r.transport, "%s", tnames[ti]);
                    snprintf(r.provider, sizeof r.provider, "%s", t->provider);
                    snprintf(r.placement, sizeof r.placement, "%s", pnames[pi]);
                    snprintf(r.mode, sizeof r.mode, "%s", mnames[mi]);
                    print_result(&w, &o, &r, shard_max, whole.bytes);
                    results[n_results++] = r;
                }
            }
            us_transport_close(t);
        }
        us_synth_view_free(&local);
        us_synth_view_free(&whole);
    }
    if (w.rank == 0) {
        printf("\n%-7s %-12s %-6s %-7s %11s %11s %9s %9s %8s %8s %8s %7s %9s\n", "transp",
               "provider", "place", "mode", "tokens/s", "baseline/s", "ratio", "B/token",
               "msgs/bat", "p50 ms", "p99 ms", "relerr", "push/pull");
        for (int i = 0; i < n_results; i++) {
            const bench_result *r = &results[i];
            printf("%-7s %-12s %-6s %-7s %11.0f %11.0f %9.4f %9.0f %8.1f %8.3f %8.3f %7.1e "
                   "%4llu/%-4llu\n", r->transport, r->provider, r->placement, r->mode,
                   r->tokens_per_s, r->base_tokens_per_s, r->ratio,
                   r->sent_per_token + r->recv_per_token, r->msgs_per_batch, r->p50_ms,
                   r->p99_ms, r->max_rel_err, (unsigned long long)r->push_batches,
                   (unsigned long long)r->pull_batches);
            if (r->max_rel_err > 1e-5)
                status = 1;
        }
        printf("(ratio = distributed tokens/s over the single-process gather of the same "
               "batches on rank 0; B/token = bytes sent + received by coordinator 0)\n");
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, w.comm);
    us_world_finalize(&w);
    return status;
}
