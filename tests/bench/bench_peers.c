/*
 * bench_peers.c — UltraShard's local lookup kernel against peers, on the
 * same rows and the same (row, weight) lookups in the same run.
 *
 *   table    rows x dim f32 synthetic values (shard/synthetic.h), in RAM,
 *            seen through a us_rows_view of 4096-row blocks
 *   lookups  batches x tokens x k pairs; rows uniform or Zipf(s) over a
 *            fixed permutation of the row ids (hot rows spread over the
 *            table); weights positive, summing to 1 per token
 *   limits   sequential read of the table (memory bandwidth) and a plain
 *            random-row copy (us_gather_copy) of the uniform lookups
 *   ultrashard  us_gather_sum, 1 .. --max-threads (default 2) threads; the
 *            1-thread run is the baseline of every ratio
 *   redis    a redis-server the script started on 127.0.0.1 (--redis-port):
 *            one binary string per row (key = 8-byte row id), one MGET per
 *            batch, pipelined `--redis-depth` batches deep, weighted sum on
 *            the client in the same order (fused multiply-add) as the kernel
 *   numpy / torch: tests/bench/peers_numpy.py reads the files written to
 *            --dump DIR (table, rows, weights, ultrashard's sums)
 * Every peer's sums are checked against ultrashard's before it is timed
 * (max |diff| / max |ref|, reported). Times are the best of --reps passes.
 *
 * Output: JSON lines on stdout (bench "peers"); errors on stderr, exit 1.
 * usage: bench_peers [--rows N] [--dim D] [--tokens T] [--k K] [--batches N]
 *                    [--zipf-s S] [--reps N] [--redis-port P] [--redis-depth N]
 *                    [--max-threads N] [--dump DIR]
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kernels/gather.h"
#include "kernels/hash.h"
#include "shard/synthetic.h"
#include "kernels/stats.h"

#define BLOCK_BITS 12

typedef struct cfg {
    uint64_t rows;
    uint32_t dim, tokens, k, batches, reps, redis_depth, max_threads;
    double zipf_s;
    int redis_port;
    const char *dump;
} cfg;

typedef struct lookups {
    const char *dist;
    uint64_t *rows;     /* [batches * tokens * k] */
    float *weights;
    float *expect;      /* ultrashard's sums [batches * tokens * dim] */
} lookups;

static long max_rss_bytes(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

static uint64_t splitmix(uint64_t *s)
{
    return us_splitmix64_next(s);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1p-53; }

/* Fills the lookups: rank r (0 = hottest) maps to row (r * odd + 12345) mod
 * rows, a bijection when rows is a power of two, so hot rows are scattered. */
static int make_lookups(lookups *lk, const cfg *c, const char *dist, uint64_t seed)
{
    size_t pairs = (size_t)c->batches * c->tokens * c->k;
    lk->dist = dist;
    lk->rows = malloc(pairs * sizeof *lk->rows);
    lk->weights = malloc(pairs * sizeof *lk->weights);
    lk->expect = malloc((size_t)c->batches * c->tokens * c->dim * sizeof(float));
    double *cdf = NULL;
    if (!lk->rows || !lk->weights || !lk->expect)
        return -1;
    bool zipf = strcmp(dist, "zipf") == 0;
    if (zipf) {
        if (!(cdf = malloc(c->rows * sizeof *cdf)))
            return -1;
        double sum = 0;
        for (uint64_t r = 0; r < c->rows; r++)
            cdf[r] = (sum += pow((double)(r + 1), -c->zipf_s));
        for (uint64_t r = 0; r < c->rows; r++)
            cdf[r] /= sum;
    }
    uint64_t s = seed;
    for (size_t t = 0; t < pairs / c->k; t++) {
        float wsum = 0;
        for (uint32_t i = 0; i < c->k; i++) {
            uint64_t rank;
            if (zipf) {
                double u = unit(&s);
                uint64_t lo = 0, hi = c->rows - 1;
                while (lo < hi) {
                    uint64_t mid = lo + (hi - lo) / 2;
                    if (cdf[mid] < u) lo = mid + 1; else hi = mid;
                }
                rank = lo;
            } else {
                rank = splitmix(&s) & (c->rows - 1);
            }
            lk->rows[t * c->k + i] = (rank * 0x9e3779b97f4a7c15ull + 12345) & (c->rows - 1);
            float w = (float)(0.05 + unit(&s));
            lk->weights[t * c->k + i] = w;
            wsum += w;
        }
        for (uint32_t i = 0; i < c->k; i++)
            lk->weights[t * c->k + i] /= wsum;
    }
    free(cdf);
    return 0;
}

static double max_rel_diff(const float *a, const float *ref, size_t n)
{
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > diff || d != d) diff = d;
        if (fabs(ref[i]) > mag) mag = fabs(ref[i]);
    }
    return mag > 0 ? diff / mag : diff;
}

static int write_file(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "bench_peers: write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void emit(const cfg *c, const char *peer, const char *dist, int threads, double secs,
                 double err_rel, double mem_bytes, const char *extra)
{
    double pairs = (double)c->batches * c->tokens * c->k;
    printf("{\"bench\":\"peers\",\"peer\":\"%s\",\"dist\":\"%s\",\"threads\":%d,"
           "\"rows\":%llu,\"dim\":%u,\"dtype\":\"f32\",\"tokens\":%u,\"k\":%u,\"batches\":%u,"
           "\"seconds\":%.6g,\"tokens_per_s\":%.6g,\"pairs_per_s\":%.6g,\"row_gb_per_s\":%.6g,"
           "\"max_rel_err\":%.3g,\"mem_bytes\":%.6g%s%s}\n",
           peer, dist, threads, (unsigned long long)c->rows, c->dim, c->tokens, c->k,
           c->batches, secs, c->batches * (double)c->tokens / secs, pairs / secs,
           pairs * c->dim * 4 / secs / 1e9, err_rel, mem_bytes, extra ? "," : "",
           extra ? extra : "");
    fflush(stdout);
}

/* --- redis ------------------------------------------------------------ */

static redisContext *redis_connect(int port)
{
    for (int tries = 0; tries < 100; tries++) {     /* the server may still be starting */
        redisContext *rc = redisConnect("127.0.0.1", port);
        if (rc && !rc->err)
            return rc;
        if (rc) redisFree(rc);
        usleep(50000);
    }
    fprintf(stderr, "bench_peers: cannot connect to redis on 127.0.0.1:%d\n", port);
    return NULL;
}

static int redis_load(redisContext *rc, const cfg *c, const float *table)
{
    const uint64_t chunk = 512;
    for (uint64_t r0 = 0; r0 < c->rows; r0 += chunk) {
        uint64_t n = c->rows - r0 < chunk ? c->rows - r0 : chunk;
        for (uint64_t r = r0; r < r0 + n; r++)
            redisAppendCommand(rc, "SET %b %b", &r, sizeof r,
                               table + r * c->dim, (size_t)c->dim * 4);
        for (uint64_t i = 0; i < n; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(rc, (void **)&rep) != REDIS_OK || rep->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "bench_peers: redis SET failed: %s\n",
                        rep ? rep->str : rc->errstr);
                if (rep) freeReplyObject(rep);
                return -1;
            }
            freeReplyObject(rep);
        }
    }
    return 0;
}

/* One MGET per batch, `depth` batches in flight; sums into out. */
static int redis_pass(redisContext *rc, const cfg *c, const lookups *lk, float *out)
{
    size_t keys = (size_t)c->tokens * c->k;
    const char **argv = malloc((keys + 1) * sizeof *argv);
    size_t *argl = malloc((keys + 1) * sizeof *argl);
    if (!argv || !argl) { free(argv); free(argl); return -1; }
    int rc_status = 0;
    uint32_t sent = 0, done = 0;
    while (done < c->batches) {
        while (sent < c->batches && sent - done < c->redis_depth) {
            argv[0] = "MGET"; argl[0] = 4;
            for (size_t i = 0; i < keys; i++) {
                argv[i + 1] = (const char *)&lk->rows[(size_t)sent * keys + i];
                argl[i + 1] = sizeof(uint64_t);
            }
            redisAppendCommandArgv(rc, (int)keys + 1, argv, argl);
            sent++;
        }
        redisReply *rep = NULL;
        if (redisGetReply(rc, (void **)&rep) != REDIS_OK || rep->type != REDIS_REPLY_ARRAY ||
            rep->elements != keys) {
            fprintf(stderr, "bench_peers: redis MGET of batch %u failed: %s\n", done,
                    rep && rep->type == REDIS_REPLY_ERROR ? rep->str : rc->errstr);
            if (rep) freeReplyObject(rep);
            rc_status = -1;
            break;
        }
        for (uint32_t t = 0; t < c->tokens; t++) {
            size_t tok = (size_t)done * c->tokens + t;
            float *o = out + tok * c->dim;
            for (uint32_t d = 0; d < c->dim; d++) o[d] = 0.0f;
            for (uint32_t i = 0; i < c->k; i++) {
                const redisReply *e = rep->element[t * c->k + i];
                if (e->type != REDIS_REPLY_STRING || e->len != (size_t)c->dim * 4) {
                    fprintf(stderr, "bench_peers: redis value of row %llu missing\n",
                            (unsigned long long)lk->rows[tok * c->k + i]);
                    freeReplyObject(rep);
                    free(argv); free(argl);
                    return -1;
                }
                float w = lk->weights[tok * c->k + i], v[c->dim];
                memcpy(v, e->str, (size_t)c->dim * 4);       /* reply strings are unaligned */
                for (uint32_t d = 0; d < c->dim; d++) o[d] = fmaf(w, v[d], o[d]);
            }
        }
        freeReplyObject(rep);
        done++;
    }
    free(argv); free(argl);
    return rc_status;
}

/* used_memory and used_memory_rss from INFO memory (bytes), -1 if absent. */
static void redis_memory(redisContext *rc, double *used, double *rss)
{
    *used = *rss = -1;
    redisReply *rep = redisCommand(rc, "INFO memory");
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *p;
        if ((p = strstr(rep->str, "used_memory:"))) *used = atof(p + 12);
        if ((p = strstr(rep->str, "used_memory_rss:"))) *rss = atof(p + 16);
    }
    if (rep) freeReplyObject(rep);
}

/* --- main ------------------------------------------------------------- */

static int parse_args(cfg *c, int argc, char **argv)
{
    *c = (cfg){ .rows = 1u << 19, .dim = 256, .tokens = 64, .k = 32, .batches = 200,
                .reps = 3, .redis_depth = 4, .max_threads = 2, .zipf_s = 1.0, .redis_port = 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "bench_peers: %s needs a value\n", a); return -1; }
        char *end;
        double x = strtod(v, &end);
        if (strcmp(a, "--dump") == 0) { c->dump = v; i++; continue; }
        if (*end != '\0' || x < 0) { fprintf(stderr, "bench_peers: %s: bad value '%s'\n", a, v); return -1; }
        if      (strcmp(a, "--rows") == 0)        c->rows = (uint64_t)x;
        else if (strcmp(a, "--dim") == 0)         c->dim = (uint32_t)x;
        else if (strcmp(a, "--tokens") == 0)      c->tokens = (uint32_t)x;
        else if (strcmp(a, "--k") == 0)           c->k = (uint32_t)x;
        else if (strcmp(a, "--batches") == 0)     c->batches = (uint32_t)x;
        else if (strcmp(a, "--reps") == 0)        c->reps = (uint32_t)x;
        else if (strcmp(a, "--zipf-s") == 0)      c->zipf_s = x;
        else if (strcmp(a, "--redis-port") == 0)  c->redis_port = (int)x;
        else if (strcmp(a, "--redis-depth") == 0) c->redis_depth = (uint32_t)x;
        else if (strcmp(a, "--max-threads") == 0) c->max_threads = (uint32_t)x;
        else { fprintf(stderr, "bench_peers: unknown option %s\n", a); return -1; }
        i++;
    }
    if (c->rows < 4096 || (c->rows & (c->rows - 1)) || c->dim < 1 || c->dim > 4096 ||
        !c->tokens || !c->k || !c->batches || !c->reps || !c->redis_depth || !c->max_threads) {
        fprintf(stderr, "bench_peers: need rows a power of two >= 4096, dim 1..4096, "
                        "tokens, k, batches, reps, redis-depth >= 1\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cfg c;
    if (parse_args(&c, argc, argv) != 0)
        return 2;
    const size_t row_bytes = (size_t)c.dim * 4, table_bytes = c.rows * row_bytes;
    const uint64_t n_blocks = c.rows >> BLOCK_BITS;
    /* The table as numpy allocates the peers' one (numpy asks for huge pages
     * on large arrays): 2 MiB aligned, MADV_HUGEPAGE (THP is "madvise" here).
     * With malloc's 64-byte alignment a quarter of the 1 KiB rows straddled
     * two 4 KiB pages: 464-486k tokens/s vs 518-572k page-aligned and
     * 594-604k with huge pages (1 thread, uniform, 2026-12-04). */
    const size_t huge = (size_t)2 << 20;
    size_t table_alloc = (table_bytes + huge - 1) & ~(huge - 1);
    float *table = aligned_alloc(huge, table_alloc);
    const uint8_t **blocks = malloc(n_blocks * sizeof *blocks);
    if (!table || !blocks) { fprintf(stderr, "bench_peers: out of memory\n"); return 1; }
    madvise(table, table_alloc, MADV_HUGEPAGE);   /* advice only: no error to handle */
    for (uint64_t r = 0; r < c.rows; r++)
        us_synth_row_f32(table + r * c.dim, 1, 0, r, c.dim);
    for (uint64_t b = 0; b < n_blocks; b++)
        blocks[b] = (const uint8_t *)table + (b << BLOCK_BITS) * row_bytes;
    us_rows_view v = { .dtype = US_DTYPE_F32, .dim = c.dim, .block_bits = BLOCK_BITS,
                       .row_stride_bytes = row_bytes, .rows = c.rows, .n_blocks = n_blocks,
                       .blocks = blocks };
    us_err err = {0};
    const size_t n_tok = (size_t)c.batches * c.tokens, pairs_per_batch = (size_t)c.tokens * c.k;
    float *out = malloc(n_tok * c.dim * sizeof *out);
    void *copy = malloc(pairs_per_batch * row_bytes);
    if (!out || !copy) { fprintf(stderr, "bench_peers: out of memory\n"); return 1; }

    lookups lk[2];
    if (make_lookups(&lk[0], &c, "uniform", 7) || make_lookups(&lk[1], &c, "zipf", 8)) {
        fprintf(stderr, "bench_peers: out of memory\n");
        return 1;
    }

    /* limits: sequential read of the whole table, one thread */
    double best = 1e30, sink = 0;
    for (uint32_t rep = 0; rep < c.reps; rep++) {
        double t0 = us_now_s();
        float acc[8] = {0};
        for (size_t i = 0; i + 8 <= c.rows * c.dim; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += table[i + j];
        best = fmin(best, us_now_s() - t0);
        for (int j = 0; j < 8; j++) sink += acc[j];
    }
    printf("{\"bench\":\"peers\",\"peer\":\"limit_seq_read\",\"threads\":1,\"bytes\":%zu,"
           "\"seconds\":%.6g,\"gb_per_s\":%.6g,\"checksum\":%.6g}\n",
           table_bytes, best, table_bytes / best / 1e9, sink);
    /* limits: plain random-row copy of the uniform lookups, batch by batch */
    best = 1e30;
    for (uint32_t rep = 0; rep < c.reps; rep++) {
        double t0 = us_now_s();
        for (uint32_t b = 0; b < c.batches; b++)
            if (us_gather_copy(copy, NULL, &v, lk[0].rows + b * pairs_per_batch,
                               pairs_per_batch, 1, &err) != US_OK) {
                fprintf(stderr, "bench_peers: gather_copy: %s\n", err.msg);
                return 1;
            }
        best = fmin(best, us_now_s() - t0);
    }
    emit(&c, "limit_random_copy", "uniform", 1, best, 0, (double)table_bytes, NULL);

    /* ultrashard: the baseline; 1 thread (vs single-threaded peers) and 2 */
    for (int l = 0; l < 2; l++) {
        for (int threads = 1; threads <= (int)c.max_threads; threads++) {
            best = 1e30;
            for (uint32_t rep = 0; rep < c.reps; rep++) {
                double t0 = us_now_s();
                for (uint32_t b = 0; b < c.batches; b++)
                    if (us_gather_sum(lk[l].expect + (size_t)b * c.tokens * c.dim, &v,
                                      lk[l].rows + b * pairs_per_batch,
                                      lk[l].weights + b * pairs_per_batch, c.tokens, c.k,
                                      threads, &err) != US_OK) {
                        fprintf(stderr, "bench_peers: gather_sum: %s\n", err.msg);
                        return 1;
                    }
                best = fmin(best, us_now_s() - t0);
            }
            emit(&c, "ultrashard", lk[l].dist, threads, best, 0, (double)table_bytes, NULL);
        }
    }

    if (c.dump) {
        char meta[512];
        int n = snprintf(meta, sizeof meta,
                         "{\"rows\":%llu,\"dim\":%u,\"tokens\":%u,\"k\":%u,\"batches\":%u,"
                         "\"reps\":%u,\"dists\":[\"uniform\",\"zipf\"]}\n",
                         (unsigned long long)c.rows, c.dim, c.tokens, c.k, c.batches, c.reps);
        if (write_file(c.dump, "meta.json", meta, (size_t)n) ||
            write_file(c.dump, "table.f32", table, table_bytes))
            return 1;
        for (int l = 0; l < 2; l++) {
            char name[64];
            snprintf(name, sizeof name, "rows_%s.i64", lk[l].dist);
            if (write_file(c.dump, name, lk[l].rows, n_tok * c.k * sizeof(uint64_t)))
                return 1;
            snprintf(name, sizeof name, "weights_%s.f32", lk[l].dist);
            if (write_file(c.dump, name, lk[l].weights, n_tok * c.k * sizeof(float)))
                return 1;
            snprintf(name, sizeof name, "expect_%s.f32", lk[l].dist);
            if (write_file(c.dump, name, lk[l].expect, n_tok * c.dim * sizeof(float)))
                return 1;
        }
    }

    if (c.redis_port > 0) {
        redisContext *rc = redis_connect(c.redis_port);
        if (!rc)
            return 1;
        double t0 = us_now_s();
        if (redis_load(rc, &c, table) != 0) { redisFree(rc); return 1; }
        double load_s = us_now_s() - t0, used, rss;
        redis_memory(rc, &used, &rss);
        for (int l = 0; l < 2; l++) {
            memset(out, 0xff, n_tok * c.dim * sizeof *out);   /* NaN: a missed token shows */
            if (redis_pass(rc, &c, &lk[l], out) != 0) { redisFree(rc); return 1; }
            double rel = max_rel_diff(out, lk[l].expect, n_tok * c.dim);
            if (!(rel <= 1e-5)) {
                fprintf(stderr, "bench_peers: redis sums differ from ultrashard's: %g\n", rel);
                redisFree(rc);
                return 1;
            }
            best = 1e30;
            for (uint32_t rep = 0; rep < c.reps; rep++) {
                double t1 = us_now_s();
                if (redis_pass(rc, &c, &lk[l], out) != 0) { redisFree(rc); return 1; }
                best = fmin(best, us_now_s() - t1);
            }
            char extra[256];
            snprintf(extra, sizeof extra, "\"redis_used_memory\":%.6g,\"redis_rss\":%.6g,"
                     "\"load_seconds\":%.4g,\"pipeline_depth\":%u,\"client_rss\":%ld",
                     used, rss, load_s, c.redis_depth, max_rss_bytes());
            emit(&c, "redis", lk[l].dist, 1, best, rel, rss, extra);
        }
        redisFree(rc);
    }
    fprintf(stderr, "bench_peers: max RSS %.1f MiB\n", max_rss_bytes() / 1048576.0);
    for (int l = 0; l < 2; l++) { free(lk[l].rows); free(lk[l].weights); free(lk[l].expect); }
    free(out); free(copy); free(blocks); free(table);
    return 0;
}
