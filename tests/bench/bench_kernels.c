/*
 * bench_kernels.c — the memory-lookup kernels against the machine's limits,
 * measured in the same run (the machine is shared: ratios, not absolutes).
 *
 *   limits : sequential read bandwidth of the table; plain random-row gather
 *            (us_gather_copy of the same rows into a per-batch buffer)
 *   gather : us_gather_sum bytes-of-rows-read per second, per dtype, row size
 *            and thread count, with and without software prefetch, as a ratio
 *            to the plain gather of the same rows
 *   score  : us_pk_score GFLOP/s (sgemm flops) vs the bare sgemm calls of the
 *            same shapes
 *   topk   : ns per scored element, fast path vs the full-sort reference
 *
 * Output: one JSON object per line on stdout; a human table on stderr.
 * Usage: bench_kernels [--table-mib N] [--quick] [--cpu-time] [--part P]
 * (--cpu-time: thread CPU time, 1-thread gather rows only; see now_s)
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include "kernels/gather.h"
#include "kernels/hash.h"
#include "kernels/score.h"
#include "kernels/topk.h"

/* --cpu-time: the calling thread's CPU time instead of wall time, for the
 * 1-thread gather rows on an oversubscribed machine (time spent preempted
 * is not counted; memory contention still is). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long max_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static double loadavg(void)
{
    double one = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &one) != 1)
            one = -1;
        fclose(f);
    }
    return one;
}

static uint64_t rng_state = 1;
static uint64_t rng_next(void)
{
    return us_splitmix64_next(&rng_state);
}

/* ---- sequential read ------------------------------------------------------ */

__attribute__((target("avx2")))
static float read_all(const float *p, size_t n, int n_threads)
{
    float total = 0;
    #pragma omp parallel num_threads(n_threads) reduction(+ : total)
    {
        size_t me = (size_t)omp_get_thread_num(), team = (size_t)omp_get_num_threads();
        size_t a = n / 32 * me / team * 32, b = n / 32 * (me + 1) / team * 32;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = a; i < b; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (int l = 0; l < 8; l++)
            total += lanes[l];
    }
    return total;
}

/* ---- gather ---------------------------------------------------------------- */

typedef struct gather_setup {
    uint8_t *table;
    size_t   table_bytes;
    const uint8_t **blocks;
    const float **scales;
    float   *scale_store;
} gather_setup;

#define BLOCK_BITS 12
#define K_PER_TOKEN 32
#define BATCH_TOKENS 64

static void make_view(us_rows_view *v, gather_setup *g, us_dtype dtype, size_t row_bytes)
{
    memset(v, 0, sizeof *v);
    v->dtype = dtype;
    v->dim = (uint32_t)(row_bytes / us_dtype_size(dtype));
    v->block_bits = BLOCK_BITS;
    v->row_stride_bytes = row_bytes;
    v->rows = g->table_bytes / row_bytes;
    v->n_blocks = (v->rows + (1u << BLOCK_BITS) - 1) >> BLOCK_BITS;
    for (uint64_t b = 0; b < v->n_blocks; b++) {
        g->blocks[b] = g->table + (b << BLOCK_BITS) * row_bytes;
        g->scales[b] = g->scale_store + (b << BLOCK_BITS);
    }
    v->blocks = g->blocks;
    v->block_scales = dtype == US_DTYPE_INT8 ? g->scales : NULL;
}

/* Best-of-reps seconds for each variant over the same batches of ids,
 * interleaved in every rep: plain copy, then gather-sum with the library's
 * defaults (prefetch chosen by row size, widest vector unit), prefetch
 * forced on, forced off, and the defaults before 2026-12-04 (prefetch on at
 * every row size, AVX2): an A/B of the change in one process. */
enum { V_COPY, V_AUTO, V_PF_ON, V_PF_OFF, V_OLD, N_VARIANTS };
typedef struct gather_times { double t[N_VARIANTS]; } gather_times;

static int time_gather(gather_times *best, const us_rows_view *v, const uint64_t *rows,
                       const float *weights, size_t n_pairs, void *copy_buf, float *sum_buf,
                       int threads, int reps)
{
    size_t batch_pairs = (size_t)BATCH_TOKENS * K_PER_TOKEN;
    const us_gather_opts opts[N_VARIANTS] = {
        [V_AUTO] = { .prefetch = US_GATHER_PREFETCH },
        [V_PF_ON] = { .prefetch = 1 }, [V_PF_OFF] = { .prefetch = 0 },
        [V_OLD] = { .prefetch = 1, .force_avx2 = 1 },
    };
    float scale_buf[BATCH_TOKENS * K_PER_TOKEN];   /* int8 rows are copied with their scales */
    us_err err = { 0 };
    for (int variant = 0; variant < N_VARIANTS; variant++)
        best->t[variant] = INFINITY;
    for (int rep = 0; rep < reps; rep++) {
        for (int variant = 0; variant < N_VARIANTS; variant++) {
            double t0 = now_s();
            for (size_t p = 0; p + batch_pairs <= n_pairs; p += batch_pairs) {
                int rc;
                if (variant == V_COPY)
                    rc = us_gather_copy(copy_buf, v->dtype == US_DTYPE_INT8 ? scale_buf : NULL,
                                        v, rows + p, batch_pairs, threads, &err);
                else
                    rc = us_gather_sum_opts(sum_buf, v, rows + p, weights + p, NULL,
                                            BATCH_TOKENS, K_PER_TOKEN, 1, threads,
                                            &opts[variant], &err);
                if (rc != US_OK) {
                    fprintf(stderr, "bench_kernels: %s\n", err.msg);
                    return rc;
                }
            }
            double dt = now_s() - t0;
            if (dt < best->t[variant])
                best->t[variant] = dt;
        }
    }
    return US_OK;
}

/* ---- scoring ----------------------------------------------------------------- */

static int bench_score(us_pk_mode mode, int T, int threads, int reps, const char *tag)
{
    us_pk_shape s = { T, 4, 256, 1024, 1024, mode == US_PK_TUCKER ? 2 : 1, 1, 32, 32,
                      mode, US_PK_ACT_NONE };
    size_t H = s.n_heads, d = s.d_key, r = s.rank, n = s.n_rows;
    size_t nq = (size_t)T * H * 2 * d, nk = H * r * n * d;
    float *q = malloc(nq * 4), *kr = malloc(nk * 4), *kc = malloc(nk * 4);
    float *core = malloc(H * r * r * 4), *sc = malloc((size_t)T * H * s.k * 4);
    uint64_t *idx = malloc((size_t)T * H * s.k * 8);
    float *c_bare = malloc((size_t)T * r * n * 4);
    size_t ws_bytes = us_pk_workspace_bytes(&s, threads);
    void *ws = malloc(ws_bytes);
    if (!q || !kr || !kc || !core || !sc || !idx || !c_bare || !ws) {
        fprintf(stderr, "bench_kernels: out of memory (score)\n");
        return US_ENOMEM;
    }
    for (size_t i = 0; i < nq; i++) q[i] = (float)((rng_next() >> 40) * 0x1.0p-24) - 0.5f;
    for (size_t i = 0; i < nk; i++) kr[i] = (float)((rng_next() >> 40) * 0x1.0p-24) - 0.5f;
    for (size_t i = 0; i < nk; i++) kc[i] = (float)((rng_next() >> 40) * 0x1.0p-24) - 0.5f;
    for (size_t i = 0; i < H * r * r; i++) core[i] = (i % (r + 1) == 0) ? 1.0f : 0.2f;
    openblas_set_num_threads(threads);
    /* Blocks of 3 calls of each kind (bare sgemms, us_pk_score, us_pk_score
     * with top-k limited to AVX2, the path before 2026-12-04), the blocks
     * repeated, best time of each kind. In blocks, the bare sgemm's best call
     * follows a bare sgemm: interleaved, it followed us_pk_score's OpenMP
     * team, whose spinning threads took one of the 2 cores and made the
     * baseline look up to 1.3x slower (2-thread ratios > 1). */
    double best[3] = { INFINITY, INFINITY, INFINITY };
    us_err err = { 0 };
    for (int round = 0; round < (reps + 2) / 3; round++)
        for (int kind = 0; kind < 3; kind++)
            for (int call = 0; call < 3; call++) {
                double t0 = now_s();
                if (kind == 0) {
                    for (size_t h = 0; h < H; h++)
                        for (int side = 0; side < 2; side++)
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)(r * n),
                                        (int)d, 1.0f, q + h * 2 * d + side * d, (int)(2 * H * d),
                                        (side ? kc : kr) + h * r * n * d, (int)d, 0.0f, c_bare,
                                        (int)(r * n));
                } else {
                    us_topk_limit_isa(kind == 1 ? 2 : 1);
                    int rc = us_pk_score(idx, sc, q, kr, kc, mode == US_PK_TUCKER ? core : NULL,
                                         &s, ws, ws_bytes, threads, &err);
                    us_topk_limit_isa(2);
                    if (rc != US_OK) {
                        fprintf(stderr, "bench_kernels: %s\n", err.msg);
                        return err.code;
                    }
                }
                double t = now_s() - t0;
                if (t < best[kind])
                    best[kind] = t;
            }
    double best_bare = best[0], best_score = best[1], best_avx2 = best[2];
    double flops = 2.0 * T * d * (double)(r * n) * 2 * H;
    printf("{\"bench\":\"kernels\",\"kernel\":\"pk_score\",\"mode\":\"%s\",\"T\":%d,\"H\":%zu,"
           "\"d_key\":%zu,\"n_keys\":%zu,\"rank\":%zu,\"k_pre\":%d,\"k\":%d,\"threads\":%d,"
           "\"gflops\":%.2f,\"baseline\":\"bare_sgemm\",\"baseline_gflops\":%.2f,"
           "\"ratio\":%.3f,\"ratio_topk_avx2\":%.3f,\"score_us\":%.1f,\"sgemm_us\":%.1f,"
           "\"clock\":\"%s\",\"workspace_bytes\":%zu}\n",
           tag, T, H, d, n, r, s.k_pre, s.k, threads, flops / best_score * 1e-9,
           flops / best_bare * 1e-9, best_bare / best_score, best_bare / best_avx2,
           best_score * 1e6, best_bare * 1e6,
           bench_clock == CLOCK_MONOTONIC ? "wall" : "thread_cpu", ws_bytes);
    fprintf(stderr, "score %-6s T=%-4d thr=%d  %7.1f GFLOP/s  bare sgemm %7.1f  ratio %.2f"
            "  (top-k AVX2 only: %.2f)\n", tag, T, threads, flops / best_score * 1e-9,
            flops / best_bare * 1e-9, best_bare / best_score, best_bare / best_avx2);
    free(q); free(kr); free(kc); free(core); free(sc); free(idx); free(c_bare); free(ws);
    return US_OK;
}

/* ---- top-k --------------------------------------------------------------------- */

static void bench_topk(size_t n, size_t k, size_t n_rows)
{
    float *s = malloc(n * n_rows * 4);
    uint32_t *idx = malloc(k * n_rows * 4);
    float *val = malloc(k * n_rows * 4);
    if (!s || !idx || !val)
        return;
    for (size_t i = 0; i < n * n_rows; i++)
        s[i] = (float)((rng_next() >> 40) * 0x1.0p-24);
    double best_fast = INFINITY, best_ref = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        us_topk_rows(idx, val, s, n_rows, n, n, k, 1, NULL);
        double t1 = now_s();
        us_topk_rows_ref(idx, val, s, n_rows, n, n, k, NULL);
        double t2 = now_s();
        if (t1 - t0 < best_fast) best_fast = t1 - t0;
        if (t2 - t1 < best_ref) best_ref = t2 - t1;
    }
    double per = (double)n * n_rows;
    printf("{\"bench\":\"kernels\",\"kernel\":\"topk\",\"n\":%zu,\"k\":%zu,\"rows\":%zu,"
           "\"threads\":1,\"ns_per_elem\":%.3f,\"baseline\":\"topk_ref_sort\","
           "\"baseline_ns_per_elem\":%.3f,\"ratio\":%.2f}\n", n, k, n_rows,
           best_fast / per * 1e9, best_ref / per * 1e9, best_ref / best_fast);
    fprintf(stderr, "topk   n=%-6zu k=%-4zu %7.3f ns/elem  sort reference %7.3f  speedup %.1fx\n",
            n, k, best_fast / per * 1e9, best_ref / per * 1e9, best_ref / best_fast);
    free(s); free(idx); free(val);
}

int main(int argc, char **argv)
{
    size_t table_mib = 1024;
    int quick = 0, max_threads = 2;
    const char *part = "all";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--table-mib") == 0 && i + 1 < argc) {
            table_mib = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--cpu-time") == 0) {
            bench_clock = CLOCK_THREAD_CPUTIME_ID;
            max_threads = 1;
        } else if (strcmp(argv[i], "--part") == 0 && i + 1 < argc) {
            part = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_kernels [--table-mib N] [--quick] [--cpu-time] "
                    "[--part all|gather|score|topk]\n");
            return 2;
        }
    }
    if (table_mib < 64)
        table_mib = 64;
    int reps = quick ? 1 : 3;

    long rss_gather = 0;
    if (strcmp(part, "all") == 0 || strcmp(part, "gather") == 0) {
    /* ---- the table: one allocation, every page touched ---- */
    gather_setup g = { 0 };
    g.table_bytes = table_mib << 20;
    g.table = aligned_alloc(4096, g.table_bytes);
    size_t max_rows = g.table_bytes / 256;
    g.blocks = malloc(((max_rows >> BLOCK_BITS) + 1) * sizeof *g.blocks);
    g.scales = malloc(((max_rows >> BLOCK_BITS) + 1) * sizeof *g.scales);
    g.scale_store = malloc(max_rows * sizeof(float));
    if (!g.table || !g.blocks || !g.scales || !g.scale_store) {
        fprintf(stderr, "bench_kernels: cannot allocate a %zu MiB table\n", table_mib);
        return 1;
    }
    /* 0x3c bytes are normal numbers in every dtype (f32 0.0115, bf16 0.0115,
     * f16 1.06, int8 60): no denormal slow paths in the measurement */
    memset(g.table, 0x3c, g.table_bytes);
    for (size_t i = 0; i < max_rows; i++)
        g.scale_store[i] = 1.0f / 127;

    fprintf(stderr, "== machine limits (table %zu MiB, best of %d, load average %.2f)\n",
            table_mib, reps, loadavg());
    printf("{\"bench\":\"kernels\",\"kernel\":\"machine\",\"loadavg\":%.2f,\"cpus\":%d,"
           "\"table_bytes\":%zu}\n", loadavg(), omp_get_num_procs(), g.table_bytes);
    double seq_gbps[3] = { 0, 0, 0 };
    for (int threads = 1; threads <= max_threads; threads++) {
        double best = INFINITY;
        volatile float sink = 0;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now_s();
            sink += read_all((const float *)(const void *)g.table, g.table_bytes / 4, threads);
            double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        (void)sink;                      /* read only so the sums are not optimised out */
        seq_gbps[threads] = (double)g.table_bytes / best * 1e-9;
        printf("{\"bench\":\"kernels\",\"kernel\":\"seq_read\",\"threads\":%d,\"bytes\":%zu,"
               "\"gbps\":%.2f}\n", threads, g.table_bytes, seq_gbps[threads]);
        fprintf(stderr, "sequential read  thr=%d  %6.2f GB/s\n", threads, seq_gbps[threads]);
    }

    /* ---- gather: same random ids for copy and sum ---- */
    static const size_t row_sizes[] = { 256, 1024, 2048, 4096, 8192 };
    static const us_dtype dtypes[] = { US_DTYPE_F32, US_DTYPE_BF16, US_DTYPE_F16, US_DTYPE_INT8 };
    size_t read_target = (quick ? 64u : 256u) << 20;     /* bytes of rows per measurement */
    size_t batch_pairs = (size_t)BATCH_TOKENS * K_PER_TOKEN;
    size_t max_pairs = read_target / 256;
    uint64_t *rows = malloc(max_pairs * sizeof *rows);
    float *weights = malloc(max_pairs * sizeof *weights);
    void *copy_buf = aligned_alloc(64, batch_pairs * 8192);
    float *sum_buf = aligned_alloc(64, (size_t)BATCH_TOKENS * 8192 * sizeof(float));
    if (!rows || !weights || !copy_buf || !sum_buf) {
        fprintf(stderr, "bench_kernels: out of memory (gather)\n");
        return 1;
    }
    for (size_t i = 0; i < max_pairs; i++)
        weights[i] = 1.0f / K_PER_TOKEN;
    fprintf(stderr, "== gather-sum vs plain gather (k=%d per token, batches of %d tokens, "
            "GB/s of rows read)\n", K_PER_TOKEN, BATCH_TOKENS);
    fprintf(stderr, "%-5s %6s %3s %8s %8s %7s | ratio with prefetch on %5s, off %5s, old default %5s\n",
            "dtype", "row_B", "thr", "copy", "sum", "ratio", "", "", "");
    for (size_t si = 0; si < sizeof row_sizes / sizeof row_sizes[0]; si++) {
        size_t rb = row_sizes[si];
        size_t n_pairs = read_target / rb / batch_pairs * batch_pairs;
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
            us_rows_view v;
            make_view(&v, &g, dtypes[d], rb);
            for (size_t i = 0; i < n_pairs; i++)
                rows[i] = rng_next() % v.rows;
            for (int threads = 1; threads <= max_threads; threads++) {
                gather_times t;
                if (time_gather(&t, &v, rows, weights, n_pairs, copy_buf, sum_buf, threads,
                                reps) != US_OK)
                    return 1;
                double bytes = (double)n_pairs * rb, gbps[N_VARIANTS];
                for (int i = 0; i < N_VARIANTS; i++)
                    gbps[i] = bytes / t.t[i] * 1e-9;
                double c = gbps[V_COPY];
                printf("{\"bench\":\"kernels\",\"kernel\":\"gather_sum\",\"dtype\":\"%s\","
                       "\"row_bytes\":%zu,\"dim\":%u,\"k\":%d,\"threads\":%d,\"prefetch\":%d,"
                       "\"gbps\":%.3f,\"baseline\":\"gather_copy\",\"baseline_gbps\":%.3f,"
                       "\"ratio\":%.3f,\"gbps_prefetch_on\":%.3f,\"ratio_prefetch_on\":%.3f,"
                       "\"gbps_no_prefetch\":%.3f,\"ratio_no_prefetch\":%.3f,"
                       "\"gbps_old_default\":%.3f,\"ratio_old_default\":%.3f,\"clock\":\"%s\","
                       "\"seq_read_gbps\":%.2f,\"table_bytes\":%zu,\"loadavg\":%.2f}\n",
                       us_dtype_name(dtypes[d]), rb, v.dim, K_PER_TOKEN, threads,
                       rb <= (dtypes[d] == US_DTYPE_INT8 ? US_GATHER_PREFETCH_MAX_ROW_BYTES_INT8
                                                         : US_GATHER_PREFETCH_MAX_ROW_BYTES),
                       gbps[V_AUTO], c, gbps[V_AUTO] / c,
                       gbps[V_PF_ON], gbps[V_PF_ON] / c, gbps[V_PF_OFF], gbps[V_PF_OFF] / c,
                       gbps[V_OLD], gbps[V_OLD] / c,
                       bench_clock == CLOCK_MONOTONIC ? "wall" : "thread_cpu",
                       seq_gbps[threads], g.table_bytes,
                       loadavg());
                fprintf(stderr, "%-5s %6zu %3d %8.2f %8.2f %7.2f | %28.2f %9.2f %17.2f\n",
                        us_dtype_name(dtypes[d]), rb, threads, c, gbps[V_AUTO], gbps[V_AUTO] / c,
                        gbps[V_PF_ON] / c, gbps[V_PF_OFF] / c, gbps[V_OLD] / c);
            }
        }
    }
    /* decoding shape: one token with 128 pairs (4 heads x 32) per call; with
     * two threads the columns are split. Baseline: the same call, 1 thread. */
    if (max_threads > 1)
        fprintf(stderr, "== one token x 128 pairs per call (decode): 2 threads vs 1\n");
    for (size_t si = 1; si <= 3 && max_threads > 1; si += 2) {
        size_t rb = row_sizes[si], calls = read_target / rb / 128;
        static const us_dtype decode_dtypes[] = { US_DTYPE_F32, US_DTYPE_BF16 };
        for (size_t d = 0; d < 2; d++) {
            us_rows_view v;
            make_view(&v, &g, decode_dtypes[d], rb);
            for (size_t i = 0; i < calls * 128; i++)
                rows[i] = rng_next() % v.rows;
            double best[3] = { INFINITY, INFINITY, INFINITY };
            for (int rep = 0; rep < reps; rep++)
                for (int threads = 1; threads <= 2; threads++) {
                    double t0 = now_s();
                    for (size_t c = 0; c < calls; c++)
                        if (us_gather_sum(sum_buf, &v, rows + c * 128, weights + c * 128, 1, 128,
                                          threads, NULL) != US_OK)
                            return 1;
                    double dt = now_s() - t0;
                    if (dt < best[threads]) best[threads] = dt;
                }
            double bytes = (double)calls * 128 * rb;
            printf("{\"bench\":\"kernels\",\"kernel\":\"gather_sum_decode\",\"dtype\":\"%s\","
                   "\"row_bytes\":%zu,\"tokens\":1,\"k\":128,\"threads\":2,\"gbps\":%.3f,"
                   "\"baseline\":\"same_1_thread\",\"baseline_gbps\":%.3f,\"ratio\":%.3f,"
                   "\"loadavg\":%.2f}\n", us_dtype_name(decode_dtypes[d]), rb,
                   bytes / best[2] * 1e-9, bytes / best[1] * 1e-9, best[1] / best[2], loadavg());
            fprintf(stderr, "%-5s %6zu B rows: 1 thread %6.2f GB/s, 2 threads %6.2f (x%.2f)\n",
                    us_dtype_name(decode_dtypes[d]), rb, bytes / best[1] * 1e-9,
                    bytes / best[2] * 1e-9, best[1] / best[2]);
        }
    }
    free(rows); free(weights); free(copy_buf); free(sum_buf);
    rss_gather = max_rss_mib();
    free(g.table); free(g.blocks); free(g.scales); free(g.scale_store);

    }
    /* ---- scoring ---- */
    if (strcmp(part, "all") == 0 || strcmp(part, "score") == 0) {
    fprintf(stderr, "== product-key scoring (H=4, d=256, n_keys=1024 per side, k'=32, k=32)\n");
    /* 8 blocks of each kind per configuration (24 calls, ~1 s at T = 256):
     * with 3 blocks one neighbour's burst on this shared VM moved a ratio
     * by 0.03 between back-to-back runs; the best of more blocks is the
     * same machine state for both kinds more often */
    for (int threads = 1; threads <= max_threads; threads++) {
        if (bench_score(US_PK_SUM, 256, threads, 8 * reps, "pkm") != US_OK ||
            bench_score(US_PK_TUCKER, 256, threads, 8 * reps, "tdqkr") != US_OK ||
            bench_score(US_PK_TUCKER, 32, threads, 8 * reps, "tdqkr") != US_OK)
            return 1;
    }
    }
    /* ---- top-k ---- */
    if (strcmp(part, "all") == 0 || strcmp(part, "topk") == 0) {
        fprintf(stderr, "== top-k (1 thread)\n");
        bench_topk(1024, 32, 512);
        bench_topk(4096, 32, 128);
        bench_topk(65536, 256, 8);
    }

    printf("{\"bench\":\"kernels\",\"kernel\":\"memory\",\"max_rss_mib\":%ld,"
           "\"max_rss_mib_after_gather\":%ld,\"table_mib\":%zu}\n", max_rss_mib(), rss_gather,
           table_mib);
    fprintf(stderr, "memory: max RSS %ld MiB (table %zu MiB); load average at end %.2f\n",
            max_rss_mib(), table_mib, loadavg());
    return 0;
}
