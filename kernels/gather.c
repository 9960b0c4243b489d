/*
 * gather.c — weighted gather-sum (see gather.h for the contract).
 *
 * Structure: validate every pair first (so `out` is untouched on error),
 * then sum token by token. A token's output row (dim floats per group) is the
 * accumulator: it stays in L1 while the k source rows stream through once,
 * each read sequentially. This keeps the per-column order of additions equal
 * to the reference's (i = 0..k-1, one fmaf each), so the AVX2 path is bit
 * exact against the scalar one and tests compare with ==.
 *
 * Random rows of a table much larger than the caches are the cost; the AVX2
 * path prefetches the first lines of the row `prefetch_distance` pairs ahead
 * so several row misses are in flight at once.
 */
#include "kernels/gather.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include <immintrin.h>
#include <omp.h>

int us_rows_view_check(const us_rows_view *v, us_err *err)
{
    if (v == NULL)
        return us_err_set(err, US_EINVAL, "rows view is NULL");
    size_t elem = us_dtype_size(v->dtype);
    if (elem == 0)
        return us_err_set(err, US_EINVAL, "rows view: unknown dtype %d", (int)v->dtype);
    if (v->dim == 0)
        return us_err_set(err, US_EINVAL, "rows view: dim is 0");
    if (v->block_bits > 40)
        return us_err_set(err, US_EINVAL, "rows view: block_bits %" PRIu32 " > 40",
                          v->block_bits);
    if (v->row_stride_bytes < (size_t)v->dim * elem)
        return us_err_set(err, US_EINVAL, "rows view: row stride %zu bytes < row of %zu bytes",
                          v->row_stride_bytes, (size_t)v->dim * elem);
    uint64_t need_blocks = v->rows == 0 ? 0 : ((v->rows - 1) >> v->block_bits) + 1;
    if (v->n_blocks < need_blocks)
        return us_err_set(err, US_EINVAL, "rows view: %" PRIu64 " blocks cannot hold %"
                          PRIu64 " rows of %" PRIu64 " per block", v->n_blocks, v->rows,
                          (uint64_t)1 << v->block_bits);
    if (need_blocks > 0 && v->blocks == NULL)
        return us_err_set(err, US_EINVAL, "rows view: block table is NULL");
    if (v->dtype == US_DTYPE_INT8 && need_blocks > 0 && v->block_scales == NULL)
        return us_err_set(err, US_EINVAL, "rows view: int8 table without scales");
    return US_OK;
}

/* Validates the view, the pointers and every (row, group) of n_tokens*k
 * pairs. group may be NULL (all pairs in group 0). */
static int validate(const void *out, const us_rows_view *v, const uint64_t *rows,
                    const float *weights, const uint8_t *group, size_t n_tokens,
                    size_t k, int n_groups, us_err *err)
{
    int rc = us_rows_view_check(v, err);
    if (rc != US_OK)
        return rc;
    if (n_groups < 1 || n_groups > 256)
        return us_err_set(err, US_EINVAL, "gather: n_groups %d not in [1, 256]", n_groups);
    if (n_tokens == 0)
        return US_OK;
    if (out == NULL)
        return us_err_set(err, US_EINVAL, "gather: out is NULL");
    if (k == 0)
        return US_OK;
    if (k > SIZE_MAX / n_tokens)
        return us_err_set(err, US_EINVAL, "gather: %zu tokens x %zu pairs overflows", n_tokens, k);
    if (rows == NULL || weights == NULL)
        return us_err_set(err, US_EINVAL, "gather: rows or weights is NULL");
    if (group == NULL && n_groups != 1)
        return us_err_set(err, US_EINVAL, "gather: group is NULL with %d groups", n_groups);
    size_t n_pairs = n_tokens * k;
    for (size_t p = 0; p < n_pairs; p++) {
        uint64_t row = rows[p];
        if (row >= v->rows)
            return us_err_set(err, US_ERANGE, "gather: row %" PRIu64 " of token %zu (pair %zu) "
                              "out of range: table has %" PRIu64 " rows",
                              row, p / k, p % k, v->rows);
        uint64_t block = row >> v->block_bits;
        if (v->blocks[block] == NULL)
            return us_err_set(err, US_ENOTFOUND, "gather: block %" PRIu64 " (row %" PRIu64
                              ", token %zu) is not present", block, row, p / k);
        if (v->dtype == US_DTYPE_INT8 && v->block_scales[block] == NULL)
            return us_err_set(err, US_ENOTFOUND, "gather: scales of block %" PRIu64
                              " (row %" PRIu64 ", token %zu) are not present",
                              block, row, p / k);
        if (group != NULL && group[p] >= n_groups)
            return us_err_set(err, US_EINVAL, "gather: group %u of token %zu (pair %zu, row %"
                              PRIu64 ") >= n_groups %d", group[p], p / k, p % k, row, n_groups);
    }
    return US_OK;
}

/* ---- portable scalar path (also the reference) ------------------------- */

/* acc[c] = fmaf(w, x[c], acc[c]) for one source row. */
static void axpy_row_scalar(float *acc, const uint8_t *src, us_dtype dtype, float w, size_t dim)
{
    switch (dtype) {
    case US_DTYPE_F32: {
        const float *x = (const float *)(const void *)src;
        for (size_t c = 0; c < dim; c++)
            acc[c] = fmaf(w, x[c], acc[c]);
        break;
    }
    case US_DTYPE_BF16: {
        const uint16_t *x = (const uint16_t *)(const void *)src;
        for (size_t c = 0; c < dim; c++)
            acc[c] = fmaf(w, us_bf16_to_f32(x[c]), acc[c]);
        break;
    }
    case US_DTYPE_F16: {
        const uint16_t *x = (const uint16_t *)(const void *)src;
        for (size_t c = 0; c < dim; c++)
            acc[c] = fmaf(w, us_f16_to_f32(x[c]), acc[c]);
        break;
    }
    case US_DTYPE_INT8: {
        const int8_t *x = (const int8_t *)(const void *)src;
        for (size_t c = 0; c < dim; c++)
            acc[c] = fmaf(w, (float)x[c], acc[c]);
        break;
    }
    }
}

/* One token: zero its n_groups output rows, then add its k pairs. */
static void sum_token_scalar(float *out_tok, const us_rows_view *v, const uint64_t *rows,
                             const float *weights, const uint8_t *group, size_t k,
                             int n_groups)
{
    size_t dim = v->dim;
    memset(out_tok, 0, (size_t)n_groups * dim * sizeof *out_tok);
    for (size_t i = 0; i < k; i++) {
        float w = weights[i];
        if (w == 0.0f)
            continue;
        if (v->dtype == US_DTYPE_INT8)
            w *= us_rows_view_scale(v, rows[i]);
        float *acc = out_tok + (group ? group[i] : 0) * dim;
        axpy_row_scalar(acc, us_rows_view_row(v, rows[i]), v->dtype, w, dim);
    }
}

/* ---- AVX2 + FMA (+ F16C) path -------------------------------------------- */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline __attribute__((always_inline)) __m256 load8(const uint8_t *src, us_dtype dtype, size_t c)
{
    switch (dtype) {
    case US_DTYPE_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * c));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case US_DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * c)));
    case US_DTYPE_INT8: {
        __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(src + c));
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    }
    case US_DTYPE_F32:
    default:
        return _mm256_loadu_ps((const float *)(const void *)(src + 4 * c));
    }
}

/* The dtype switch sits outside the column loop: one specialised loop per
 * dtype after inlining (dtype is a compile-time constant in each call). */
AVX2_TARGET static inline __attribute__((always_inline)) void axpy_row_avx2(float *acc, const uint8_t *src, us_dtype dtype,
                                             float w, size_t dim)
{
    __m256 wv = _mm256_set1_ps(w);
    size_t c = 0;
    for (; c + 32 <= dim; c += 32) {
        __m256 a0 = _mm256_fmadd_ps(wv, load8(src, dtype, c), _mm256_loadu_ps(acc + c));
        __m256 a1 = _mm256_fmadd_ps(wv, load8(src, dtype, c + 8), _mm256_loadu_ps(acc + c + 8));
        __m256 a2 = _mm256_fmadd_ps(wv, load8(src, dtype, c + 16), _mm256_loadu_ps(acc + c + 16));
        __m256 a3 = _mm256_fmadd_ps(wv, load8(src, dtype, c + 24), _mm256_loadu_ps(acc + c + 24));
        _mm256_storeu_ps(acc + c, a0);
        _mm256_storeu_ps(acc + c + 8, a1);
        _mm256_storeu_ps(acc + c + 16, a2);
        _mm256_storeu_ps(acc + c + 24, a3);
    }
    for (; c + 8 <= dim; c += 8)
        _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(wv, load8(src, dtype, c),
                                                  _mm256_loadu_ps(acc + c)));
    for (; c < dim; c++) {              /* tail: same fused op, one lane */
        float x;
        switch (dtype) {
        case US_DTYPE_BF16: x = us_bf16_to_f32(((const uint16_t *)(const void *)src)[c]); break;
        case US_DTYPE_F16:  x = _cvtsh_ss(((const uint16_t *)(const void *)src)[c]); break;
        case US_DTYPE_INT8: x = (float)((const int8_t *)(const void *)src)[c]; break;
        case US_DTYPE_F32:
        default:            x = ((const float *)(const void *)src)[c]; break;
        }
        acc[c] = fmaf(w, x, acc[c]);
    }
}

static inline void prefetch_row(const us_rows_view *v, uint64_t row, size_t lines)
{
    const char *p = (const char *)us_rows_view_row(v, row);
    for (size_t l = 0; l < lines; l++)
        __builtin_prefetch(p + 64 * l, 0, 0);
}

/* Tokens [t0, t1). rows/weights/group point at the start of all pairs, so
 * the prefetch can look into the next token's pairs. */
AVX2_TARGET static void sum_tokens_avx2(float *out, const us_rows_view *v, const uint64_t *rows,
                                        const float *weights, const uint8_t *group, size_t t0,
                                        size_t t1, size_t k, int n_groups, int distance,
                                        us_dtype dtype)
{
    size_t dim = v->dim;
    size_t row_bytes = dim * us_dtype_size(dtype);
    size_t lines = (row_bytes + 63) / 64;
    if (lines > US_GATHER_PREFETCH_MAX_LINES)
        lines = US_GATHER_PREFETCH_MAX_LINES;
    size_t p_end = t1 * k;
    if (distance > 0)                    /* warm up: the first rows of this range */
        for (size_t p = t0 * k; p < p_end && p < t0 * k + (size_t)distance; p++)
            prefetch_row(v, rows[p], lines);
    for (size_t t = t0; t < t1; t++) {
        float *out_tok = out + t * (size_t)n_groups * dim;
        memset(out_tok, 0, (size_t)n_groups * dim * sizeof *out_tok);
        for (size_t i = 0; i < k; i++) {
            size_t p = t * k + i;
            if (distance > 0 && p + (size_t)distance < p_end)
                prefetch_row(v, rows[p + distance], lines);
            float w = weights[p];
            if (w == 0.0f)
                continue;
            if (dtype == US_DTYPE_INT8)
                w *= us_rows_view_scale(v, rows[p]);
            float *acc = out_tok + (group ? group[p] : 0) * dim;
            const uint8_t *src = us_rows_view_row(v, rows[p]);
            switch (dtype) {    /* constant per call: one specialised loop each */
            case US_DTYPE_F32:  axpy_row_avx2(acc, src, US_DTYPE_F32, w, dim); break;
            case US_DTYPE_BF16: axpy_row_avx2(acc, src, US_DTYPE_BF16, w, dim); break;
            case US_DTYPE_F16:  axpy_row_avx2(acc, src, US_DTYPE_F16, w, dim); break;
            case US_DTYPE_INT8: axpy_row_avx2(acc, src, US_DTYPE_INT8, w, dim); break;
            }
        }
    }
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

static int thread_count(int n_threads, size_t work_items)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if ((size_t)nt > work_items)
        nt = (int)work_items;
    return nt < 1 ? 1 : nt;
}

/* ---- public entry points ------------------------------------------------ */

int us_gather_sum_opts(float *out, const us_rows_view *v, const uint64_t *rows,
                       const float *weights, const uint8_t *group,
                       size_t n_tokens, size_t k, int n_groups, int n_threads,
                       const us_gather_opts *opts, us_err *err)
{
    int rc = validate(out, v, rows, weights, group, n_tokens, k, n_groups, err);
    if (rc != US_OK || n_tokens == 0)
        return rc;
    int distance = opts ? opts->prefetch_distance : US_GATHER_PREFETCH_DISTANCE;
    int fast = !(opts && opts->force_portable) && have_avx2();
    int nt = thread_count(n_threads, n_tokens);
    size_t dim = v->dim;
    us_dtype dtype = v->dtype;

    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int me = omp_get_thread_num(), team = omp_get_num_threads();
        size_t t0 = n_tokens * (size_t)me / (size_t)team;
        size_t t1 = n_tokens * (size_t)(me + 1) / (size_t)team;
        if (fast) {
            sum_tokens_avx2(out, v, rows, weights, group, t0, t1, k, n_groups,
                            distance < 0 ? 0 : distance, dtype);
        } else {
            for (size_t t = t0; t < t1; t++)
                sum_token_scalar(out + t * (size_t)n_groups * dim, v, rows + t * k,
                                 weights + t * k, group ? group + t * k : NULL, k, n_groups);
        }
    }
    return US_OK;
}

int us_gather_sum(float *out, const us_rows_view *v, const uint64_t *rows,
                  const float *weights, size_t n_tokens, size_t k,
                  int n_threads, us_err *err)
{
    return us_gather_sum_opts(out, v, rows, weights, NULL, n_tokens, k, 1, n_threads,
                              NULL, err);
}

int us_gather_sum_grouped(float *out, const us_rows_view *v, const uint64_t *rows,
                          const float *weights, const uint8_t *group,
                          size_t n_tokens, size_t k, int n_groups,
                          int n_threads, us_err *err)
{
    if (group == NULL && n_tokens > 0 && k > 0)
        return us_err_set(err, US_EINVAL, "gather: group is NULL");
    return us_gather_sum_opts(out, v, rows, weights, group, n_tokens, k, n_groups,
                              n_threads, NULL, err);
}

int us_gather_sum_grouped_ref(float *out, const us_rows_view *v, const uint64_t *rows,
                              const float *weights, const uint8_t *group,
                              size_t n_tokens, size_t k, int n_groups, us_err *err)
{
    if (group == NULL && n_tokens > 0 && k > 0)
        return us_err_set(err, US_EINVAL, "gather: group is NULL");
    int rc = validate(out, v, rows, weights, group, n_tokens, k, n_groups, err);
    if (rc != US_OK)
        return rc;
    for (size_t t = 0; t < n_tokens; t++)
        sum_token_scalar(out + t * (size_t)n_groups * v->dim, v, rows + t * k,
                         weights + t * k, group ? group + t * k : NULL, k, n_groups);
    return US_OK;
}

int us_gather_sum_ref(float *out, const us_rows_view *v, const uint64_t *rows,
                      const float *weights, size_t n_tokens, size_t k, us_err *err)
{
    int rc = validate(out, v, rows, weights, NULL, n_tokens, k, 1, err);
    if (rc != US_OK)
        return rc;
    for (size_t t = 0; t < n_tokens; t++)
        sum_token_scalar(out + t * (size_t)v->dim, v, rows + t * k, weights + t * k,
                         NULL, k, 1);
    return US_OK;
}

int us_gather_copy(void *out, float *out_scales, const us_rows_view *v,
                   const uint64_t *rows, size_t n, int n_threads, us_err *err)
{
    static const float one = 1.0f;     /* any non-NULL weights pointer for validate */
    int rc = us_rows_view_check(v, err);
    if (rc != US_OK || n == 0)
        return rc;
    if (rows == NULL)
        return us_err_set(err, US_EINVAL, "gather copy: rows is NULL");
    /* validate() wants a weights array only to check it is non-NULL. */
    const float *weights = &one;
    if ((rc = validate(out, v, rows, weights, NULL, n, 1, 1, err)) != US_OK)
        return rc;
    size_t row_bytes = (size_t)v->dim * us_dtype_size(v->dtype);
    int int8 = v->dtype == US_DTYPE_INT8 && out_scales != NULL;
    int nt = thread_count(n_threads, n / 64 + 1);
    uint8_t *dst = out;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (size_t i = 0; i < n; i++) {
        memcpy(dst + i * row_bytes, us_rows_view_row(v, rows[i]), row_bytes);
        if (int8)
            out_scales[i] = us_rows_view_scale(v, rows[i]);
    }
    return US_OK;
}
