/*
 * gather.h — weighted gather-sum of table rows: the hot loop of a lookup.
 *
 * For each token t and each of its k (row, weight) pairs,
 *
 *     out[t*dim + c] = sum_{i<k} weights[t*k+i] * V[rows[t*k+i]][c]
 *
 * over a us_rows_view (kernels/rows_view.h), so rows are read in place from
 * RAM arrays or mmap-ed shard files. Accumulation is f32. The grouped (IVE)
 * form keeps one sum per (token, group): out[(t*n_groups + g)*dim + c] sums
 * only the pairs whose group[t*k+i] == g.
 *
 * Numerics (exact contract; the fast path reproduces the reference bit for
 * bit, so tests compare with ==):
 *   - per output element, pairs are added in order i = 0..k-1 into an
 *     accumulator that starts at +0.0f, each step a fused multiply-add
 *     acc = fmaf(w, x, acc) (one rounding);
 *   - f32/bf16/f16 elements are widened exactly to f32 first (x = element);
 *   - int8 rows: the weight is first multiplied by the row's f32 scale,
 *     w = weights[.] * scale, and x = (float)q;
 *   - pairs with weights[.] == 0 (either sign) are skipped: their row ids are
 *     still validated, but Inf/NaN in such a row does not reach out. Any other
 *     weight, including NaN/Inf, propagates per IEEE (0 * Inf = NaN, etc.).
 *   - k == 0 writes zeros.
 *
 * Errors: every row id is validated before anything is written, so on error
 * `out` is unchanged. Row id >= v->rows -> US_ERANGE (message names the row,
 * token and pair); row in a block whose pointer is NULL (not on this rank) ->
 * US_ENOTFOUND (names block, row, token); group id >= n_groups -> US_EINVAL;
 * NULL pointers, unknown dtype, dim 0, a row stride smaller than a row, an
 * int8 view without scales -> US_EINVAL.
 *
 * Threads: parallel over tokens with OpenMP; when there are fewer tokens
 * than threads (decoding), the AVX2 path splits the columns instead, in
 * 64-column tiles. n_threads <= 0 means the OpenMP default, reduced so
 * that each thread reads at least US_GATHER_MIN_BYTES_PER_THREAD of rows
 * (small calls stay on the calling thread); an explicit n_threads is used as
 * given; 1 runs in the calling thread. Results do not depend on n_threads.
 * The functions are reentrant: no global state, no allocation.
 *
 * Fast path: AVX2+FMA (+F16C for f16, shifts for bf16, sign-extension for
 * int8), or the same tiles in AVX-512F registers where the CPU has them,
 * chosen at run time (CPUID, read once); the library itself
 * is built for x86-64-v2 and other CPUs run the portable scalar loop (the
 * reference, parallelised). Per token, 64 output columns at a time are
 * accumulated in eight ymm registers across all of the token's pairs, so the
 * first pass touches every row of the token with independent loads (many
 * misses in flight) and later passes hit the caches. Meanwhile the rows of
 * the next chunk of pairs are software-prefetched, a tile's worth per row
 * folded, for rows up to US_GATHER_PREFETCH_MAX_ROW_BYTES (us_gather_opts.prefetch).
 */
#ifndef US_GATHER_H
#define US_GATHER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"

/* us_gather_opts.prefetch: on for rows of at most
 * US_GATHER_PREFETCH_MAX_ROW_BYTES (_INT8 for int8 rows), off for longer
 * ones (the default). */
#define US_GATHER_PREFETCH_AUTO (-1)
#define US_GATHER_PREFETCH US_GATHER_PREFETCH_AUTO

/* Longest row (dim * element size) that the automatic choice prefetches,
 * from `make bench-kernels` (README; 2026-12-04, AMD EPYC VM, thread CPU
 * time): software prefetch of the next chunk gains 1.1-1.5x at 256 B-1 KiB
 * rows and loses at 2-8 KiB rows (up to 2.3x at 8 KiB bf16/f16), which the
 * hardware prefetcher streams alone; int8 rows, four times the columns per
 * byte, still gain at 2 KiB. */
#define US_GATHER_PREFETCH_MAX_ROW_BYTES 1024u
#define US_GATHER_PREFETCH_MAX_ROW_BYTES_INT8 2048u

/* Default thread count: at least this many bytes of rows per thread. */
#define US_GATHER_MIN_BYTES_PER_THREAD (256u * 1024u)

/* Tuning knobs for the *_opts forms (benchmarks); NULL = defaults. */
typedef struct us_gather_opts {
    int prefetch;            /* 1: while a chunk of up to 64 pairs is summed,
                              * software-prefetch the rows of the next chunk
                              * (spread over the arithmetic); 0: off;
                              * US_GATHER_PREFETCH_AUTO: by row size */
    int force_portable;      /* 1 = skip the AVX2/AVX-512 paths even if the CPU has them */
    int force_avx2;          /* 1 = AVX2 even if the CPU has AVX-512 (tests) */
} us_gather_opts;

/* Returns: US_OK; US_ERANGE for a row id >= v->rows;
 * US_ENOTFOUND for a row (or int8 scales) in a block not present on this
 * rank; US_EINVAL for a group id >= n_groups, n_groups outside [1, 256],
 * NULL pointers, n_tokens * k overflowing or a bad view (us_rows_view_check);
 * out unchanged on error. */
int us_gather_sum(float *out, const us_rows_view *v, const uint64_t *rows,
                  const float *weights, size_t n_tokens, size_t k,
                  int n_threads, us_err *err);

/* Returns: as us_gather_sum. */
int us_gather_sum_grouped(float *out, const us_rows_view *v, const uint64_t *rows,
                          const float *weights, const uint8_t *group,
                          size_t n_tokens, size_t k, int n_groups,
                          int n_threads, us_err *err);

/* Same as above with tuning options (group may be NULL with n_groups == 1).
 * Returns: as us_gather_sum. */
int us_gather_sum_opts(float *out, const us_rows_view *v, const uint64_t *rows,
                       const float *weights, const uint8_t *group,
                       size_t n_tokens, size_t k, int n_groups, int n_threads,
                       const us_gather_opts *opts, us_err *err);

/* For callers that have already checked every pair themselves (the shard
 * serve path: each row id of a request is checked against the table and the
 * blocks held before the pairs are laid out, so the kernel's per-pair check
 * would be a second pass over the same ids). Contract: every rows[p] <
 * v->rows, its block (and for int8 its scales) is present, and with groups
 * every group[p] < n_groups; otherwise the behaviour is undefined (reads
 * out of bounds). Only the O(1) checks are made: the view, n_groups, NULL
 * pointers, overflow. Same numerics as us_gather_sum_opts (bit-identical;
 * tested). group may be NULL with n_groups == 1.
 * Returns: US_OK; US_EINVAL for a bad view, n_groups outside [1, 256], NULL
 * pointers or n_tokens * k overflowing; out unchanged on error. */
int us_gather_sum_prechecked(float *out, const us_rows_view *v, const uint64_t *rows,
                             const float *weights, const uint8_t *group,
                             size_t n_tokens, size_t k, int n_groups, int n_threads,
                             us_err *err);

/* Scalar references: single-threaded, no intrinsics, no prefetch; same
 * contract. Used by the tests. Returns: as us_gather_sum. */
int us_gather_sum_ref(float *out, const us_rows_view *v, const uint64_t *rows,
                      const float *weights, size_t n_tokens, size_t k, us_err *err);

/* Returns: as us_gather_sum. */
int us_gather_sum_grouped_ref(float *out, const us_rows_view *v, const uint64_t *rows,
                              const float *weights, const uint8_t *group,
                              size_t n_tokens, size_t k, int n_groups, us_err *err);

/*
 * Plain gather: copies the raw bytes of rows[0..n-1] (dim * dtype size each,
 * no stride padding) into out, packed, and for int8 views their scales into
 * out_scales (may be NULL to skip). The baseline of the gather-sum benchmark
 * and the pull-path row copy.
 * Returns: US_OK; US_ERANGE / US_ENOTFOUND / US_EINVAL as us_gather_sum
 * (bad row id, absent block, NULL pointers or bad view); out unchanged on
 * error.
 */
int us_gather_copy(void *out, float *out_scales, const us_rows_view *v,
                   const uint64_t *rows, size_t n, int n_threads, us_err *err);

/* Checks the view itself (dtype, dim, block_bits <= 40, stride, block count,
 * block table, int8 scales). Returns: US_OK; US_EINVAL naming the bad field. */
int us_rows_view_check(const us_rows_view *v, us_err *err);

#endif
