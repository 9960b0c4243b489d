/*
 * gather.c — weighted gather-sum (see gather.h for the contract).
 *
 * Structure: validate every pair first (so `out` is untouched on error),
 * then sum token by token. Both paths add a column's pairs in the same order
 * (i = 0..k-1, one fused multiply-add each, starting from +0), so the AVX2
 * path is bit exact against the scalar reference and tests compare with ==.
 *
 * The scalar path folds one whole row at a time into the token's output row.
 * The AVX2 path turns the loops around (see the comment above fold_rows):
 * registers hold a 64-column tile while all of the token's rows pass, which
 * is what random rows of a table much larger than the caches need: the
 * misses of different rows are independent and overlap.
 */
#include "kernels/gather.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include <cpuid.h>
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

/* Validates the view, the counts and the pointers: the O(1) part of
 * validate, all that us_gather_sum_prechecked checks. group may be NULL
 * (all pairs in group 0). */
static int validate_args(const void *out, const us_rows_view *v, const uint64_t *rows,
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
    return US_OK;
}

/* validate_args, then every (row, group) of the n_tokens*k pairs. */
static int validate(const void *out, const us_rows_view *v, const uint64_t *rows,
                    const float *weights, const uint8_t *group, size_t n_tokens,
                    size_t k, int n_groups, us_err *err)
{
    int rc = validate_args(out, v, rows, weights, group, n_tokens, k, n_groups, err);
    if (rc != US_OK || n_tokens == 0 || k == 0)
        return rc;
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

/*
 * Accumulators live in registers: for a tile of TILE_VECS * 8 columns, all
 * pairs of a token (in order) are folded into 8 ymm sums, then stored once.
 * The first tile touches the start of every row of the token, so the k row
 * misses are independent loads in flight together (memory-level parallelism
 * is what random rows need); later tiles find the rows in L1/L2. Pairs are
 * handled in chunks of CHUNK_PAIRS: zero weights dropped, row pointers and
 * (int8) scaled weights resolved once per chunk, pairs ordered by group with
 * a stable counting sort so every column still adds its pairs in increasing
 * i -- the reference's order, hence bit-exact results.
 */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX512_TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define TILE_VECS   8
#define CHUNK_PAIRS 64

AVX2_TARGET static inline __attribute__((always_inline))
__m256 load8(const uint8_t *src, us_dtype dtype, size_t c)
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

static inline float load1(const uint8_t *src, us_dtype dtype, size_t c)
{
    switch (dtype) {
    case US_DTYPE_BF16: return us_bf16_to_f32(((const uint16_t *)(const void *)src)[c]);
    case US_DTYPE_F16:  return us_f16_to_f32(((const uint16_t *)(const void *)src)[c]);
    case US_DTYPE_INT8: return (float)((const int8_t *)(const void *)src)[c];
    case US_DTYPE_F32:
    default:            return ((const float *)(const void *)src)[c];
    }
}

/* Prefetches the bytes [from, to) of each of the n rows pf[]. */
static inline void prefetch_rows(const uint8_t *const *pf, size_t n, size_t from, size_t to)
{
    for (size_t j = 0; j < n; j++)
        for (size_t b = from; b < to; b += 64)
            __builtin_prefetch(pf[j] + b, 0, 3);
}

/*
 * acc[0..dim) += sum_j w[j] * rows src[j], j = 0..n-1 in order, over whole
 * 64-column tiles; returns the first column not done. pf[0..pf_n) are the
 * rows of the next chunk: while tile c of the current rows is folded, the
 * same bytes of the next rows are prefetched, one row per current row, so
 * the prefetches are spread over the arithmetic instead of issued all at
 * once. Each column's pairs are added in order whatever the vector width,
 * so the AVX2 and AVX-512 tiles give the same bits.
 */
AVX2_TARGET static inline __attribute__((always_inline))
size_t fold_tiles_avx2(float *acc, const uint8_t *const *src, const float *w, size_t n,
                       size_t dim, us_dtype dtype, const uint8_t *const *pf, size_t pf_n)
{
    const size_t elem = us_dtype_size(dtype), tile_bytes = 8 * TILE_VECS * elem;
    size_t c = 0;
    for (; c + 8 * TILE_VECS <= dim; c += 8 * TILE_VECS) {
        __m256 a[TILE_VECS];
        #pragma GCC unroll 8   /* a[] must live in registers, not on the stack */
        for (int v = 0; v < TILE_VECS; v++)
            a[v] = _mm256_loadu_ps(acc + c + 8 * v);
        for (size_t j = 0; j < n; j++) {
            if (j < pf_n)
                for (size_t b = 0; b < tile_bytes; b += 64)
                    __builtin_prefetch(pf[j] + c * elem + b, 0, 3);
            __m256 wv = _mm256_set1_ps(w[j]);
            #pragma GCC unroll 8
            for (int v = 0; v < TILE_VECS; v++)
                a[v] = _mm256_fmadd_ps(wv, load8(src[j], dtype, c + 8 * v), a[v]);
        }
        if (pf_n > n)
            prefetch_rows(pf + n, pf_n - n, c * elem, c * elem + tile_bytes);
        #pragma GCC unroll 8
        for (int v = 0; v < TILE_VECS; v++)
            _mm256_storeu_ps(acc + c + 8 * v, a[v]);
    }
    return c;
}

/* The same 64-column tiles in four zmm registers: half the loads,
 * conversions and FMAs of the AVX2 tile (what bf16/f16/int8 rows, which
 * convert every element, are limited by once their rows are in cache). */
AVX512_TARGET static inline __attribute__((always_inline))
__m512 load16(const uint8_t *src, us_dtype dtype, size_t c)
{
    switch (dtype) {
    case US_DTYPE_BF16: {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * c));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case US_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * c)));
    case US_DTYPE_INT8:
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128((const __m128i *)(const void *)(src + c))));
    case US_DTYPE_F32:
    default:
        return _mm512_loadu_ps((const float *)(const void *)(src + 4 * c));
    }
}

#define TILE_ZMM (TILE_VECS / 2)

AVX512_TARGET static inline __attribute__((always_inline))
size_t fold_tiles_avx512(float *acc, const uint8_t *const *src, const float *w, size_t n,
                         size_t dim, us_dtype dtype, const uint8_t *const *pf, size_t pf_n)
{
    const size_t elem = us_dtype_size(dtype), tile_bytes = 8 * TILE_VECS * elem;
    size_t c = 0;
    for (; c + 8 * TILE_VECS <= dim; c += 8 * TILE_VECS) {
        __m512 a[TILE_ZMM];
        #pragma GCC unroll 4
        for (int v = 0; v < TILE_ZMM; v++)
            a[v] = _mm512_loadu_ps(acc + c + 16 * v);
        for (size_t j = 0; j < n; j++) {
            if (j < pf_n)
                for (size_t b = 0; b < tile_bytes; b += 64)
                    __builtin_prefetch(pf[j] + c * elem + b, 0, 3);
            __m512 wv = _mm512_set1_ps(w[j]);
            #pragma GCC unroll 4
            for (int v = 0; v < TILE_ZMM; v++)
                a[v] = _mm512_fmadd_ps(wv, load16(src[j], dtype, c + 16 * v), a[v]);
        }
        if (pf_n > n)
            prefetch_rows(pf + n, pf_n - n, c * elem, c * elem + tile_bytes);
        #pragma GCC unroll 4
        for (int v = 0; v < TILE_ZMM; v++)
            _mm512_storeu_ps(acc + c + 16 * v, a[v]);
    }
    return c;
}

/* Columns [c, dim) after the whole tiles: 8 at a time, then one lane, the
 * same fused op; the rest of the next rows is prefetched first. */
AVX2_TARGET static inline __attribute__((always_inline))
void fold_tail(float *acc, const uint8_t *const *src, const float *w, size_t n, size_t c,
               size_t dim, us_dtype dtype, const uint8_t *const *pf, size_t pf_n)
{
    const size_t elem = us_dtype_size(dtype);
    if (c < dim)
        prefetch_rows(pf, pf_n, c * elem, dim * elem);
    for (; c + 8 <= dim; c += 8) {
        __m256 a = _mm256_loadu_ps(acc + c);
        for (size_t j = 0; j < n; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), load8(src[j], dtype, c), a);
        _mm256_storeu_ps(acc + c, a);
    }
    for (; c < dim; c++) {
        float a = acc[c];
        for (size_t j = 0; j < n; j++)
            a = fmaf(w[j], load1(src[j], dtype, c), a);
        acc[c] = a;
    }
}

/* One specialised copy of the fold per dtype and vector width. */
#define FOLD_AS(tiles, dt) do { \
        size_t c_ = tiles(acc, src, w, n, dim, dt, pf, pf_n); \
        fold_tail(acc, src, w, n, c_, dim, dt, pf, pf_n); \
    } while (0)

AVX2_TARGET static void fold_rows_avx2(float *acc, const uint8_t *const *src, const float *w,
                                       size_t n, size_t dim, us_dtype dtype,
                                       const uint8_t *const *pf, size_t pf_n)
{
    switch (dtype) {
    case US_DTYPE_F32:  FOLD_AS(fold_tiles_avx2, US_DTYPE_F32); break;
    case US_DTYPE_BF16: FOLD_AS(fold_tiles_avx2, US_DTYPE_BF16); break;
    case US_DTYPE_F16:  FOLD_AS(fold_tiles_avx2, US_DTYPE_F16); break;
    case US_DTYPE_INT8: FOLD_AS(fold_tiles_avx2, US_DTYPE_INT8); break;
    }
}

AVX512_TARGET static void fold_rows_avx512(float *acc, const uint8_t *const *src,
                                           const float *w, size_t n, size_t dim,
                                           us_dtype dtype, const uint8_t *const *pf,
                                           size_t pf_n)
{
    switch (dtype) {
    case US_DTYPE_F32:  FOLD_AS(fold_tiles_avx512, US_DTYPE_F32); break;
    case US_DTYPE_BF16: FOLD_AS(fold_tiles_avx512, US_DTYPE_BF16); break;
    case US_DTYPE_F16:  FOLD_AS(fold_tiles_avx512, US_DTYPE_F16); break;
    case US_DTYPE_INT8: FOLD_AS(fold_tiles_avx512, US_DTYPE_INT8); break;
    }
}

typedef void (*fold_fn)(float *acc, const uint8_t *const *src, const float *w, size_t n,
                        size_t dim, us_dtype dtype, const uint8_t *const *pf, size_t pf_n);

/* What a call runs: the fold for this CPU and whether the next chunk's
 * rows are prefetched. */
typedef struct fold_cfg {
    fold_fn fold;
    int     prefetch;
} fold_cfg;

/* Up to CHUNK_PAIRS pairs of one token with zero weights dropped and row
 * pointers resolved. int8: the scale addresses are kept and prefetched when
 * the chunk is resolved (one chunk ahead); apply_scales() multiplies them in
 * just before the fold, when they are in cache. */
typedef struct chunk {
    const uint8_t *src[CHUNK_PAIRS];
    const float   *scale[CHUNK_PAIRS];
    float          w[CHUNK_PAIRS];
    uint8_t        group[CHUNK_PAIRS];
    size_t         n;
} chunk;

static void resolve_chunk(chunk *ch, const us_rows_view *v, const uint64_t *rows,
                          const float *weights, const uint8_t *group, size_t p0, size_t p1,
                          size_t byte_offset)
{
    size_t n = 0;
    for (size_t p = p0; p < p1; p++) {
        float wi = weights[p];
        if (wi == 0.0f)
            continue;
        if (v->dtype == US_DTYPE_INT8) {
            uint64_t row = rows[p];
            ch->scale[n] = &v->block_scales[row >> v->block_bits]
                                           [row & ((1ull << v->block_bits) - 1)];
            __builtin_prefetch(ch->scale[n], 0, 3);
        }
        ch->src[n] = us_rows_view_row(v, rows[p]) + byte_offset;
        ch->w[n] = wi;
        ch->group[n] = group ? group[p] : 0;
        n++;
    }
    ch->n = n;
}

/* Folds one resolved chunk into the token's outputs: `width` columns at
 * out_tok (group g at out_tok + g * dim); pf = the next chunk (prefetched
 * meanwhile) or NULL. Groups: a stable counting sort keeps each group's
 * pairs in increasing i. */
static void fold_chunk(float *out_tok, const chunk *ch, const chunk *pf, size_t dim,
                       size_t width, us_dtype dtype, int n_groups, fold_fn fold)
{
    const uint8_t *const *pf_src = pf ? pf->src : NULL;
    size_t pf_n = pf ? pf->n : 0;
    if (n_groups == 1) {
        fold(out_tok, ch->src, ch->w, ch->n, width, dtype, pf_src, pf_n);
        return;
    }
    const uint8_t *sorted_src[CHUNK_PAIRS];
    float sorted_w[CHUNK_PAIRS];
    size_t count[257];
    memset(count, 0, ((size_t)n_groups + 1) * sizeof count[0]);
    for (size_t j = 0; j < ch->n; j++)
        count[ch->group[j] + 1]++;
    for (int g = 0; g < n_groups; g++)
        count[g + 1] += count[g];
    for (size_t j = 0; j < ch->n; j++) {
        size_t at = count[ch->group[j]]++;
        sorted_src[at] = ch->src[j];
        sorted_w[at] = ch->w[j];
    }
    /* count[g] is now the end of group g (and the start of g + 1) */
    size_t start = 0;
    for (int g = 0; g < n_groups; g++) {
        size_t end = count[g];
        if (end > start) {
            fold(out_tok + (size_t)g * dim, sorted_src + start, sorted_w + start,
                           end - start, width, dtype, pf_src, pf_n);
            pf_n = 0;                    /* the next chunk is prefetched once */
        }
        start = end;
    }
}

/* Tokens [t0, t1), columns [c0, c1), chunk by chunk; the next chunk (of
 * this token or the next) is resolved before the current one is folded, so
 * its rows can be prefetched during the fold. */
static void sum_tokens_avx2(float *out, const us_rows_view *v, const uint64_t *rows,
                            const float *weights, const uint8_t *group, size_t t0,
                            size_t t1, size_t c0, size_t c1, size_t k, int n_groups,
                            const fold_cfg *cfg)
{
    size_t dim = v->dim, out_floats = (size_t)n_groups * dim, width = c1 - c0;
    size_t byte_offset = c0 * us_dtype_size(v->dtype);
    if (width == 0)
        return;
    chunk bufs[2];
    chunk *cur = &bufs[0], *next = &bufs[1];
    size_t t = t0, i0 = 0;
    if (t < t1)
        resolve_chunk(cur, v, rows, weights, group, t * k,
                      t * k + (k < CHUNK_PAIRS ? k : CHUNK_PAIRS), byte_offset);
    while (t < t1) {
        size_t nt = t, ni0 = i0 + CHUNK_PAIRS;
        if (ni0 >= k) {
            nt = t + 1;
            ni0 = 0;
        }
        int has_next = nt < t1;
        if (has_next) {
            size_t end = ni0 + CHUNK_PAIRS < k ? ni0 + CHUNK_PAIRS : k;
            resolve_chunk(next, v, rows, weights, group, nt * k + ni0, nt * k + end,
                          byte_offset);
        }
        float *out_tok = out + t * out_floats + c0;
        if (i0 == 0)
            for (int g = 0; g < n_groups; g++)
                memset(out_tok + (size_t)g * dim, 0, width * sizeof *out_tok);
        if (k > 0 && cur->n > 0) {
            if (v->dtype == US_DTYPE_INT8)      /* w = weight * scale, as the reference */
                for (size_t j = 0; j < cur->n; j++)
                    cur->w[j] *= *cur->scale[j];
            fold_chunk(out_tok, cur, has_next && cfg->prefetch ? next : NULL, dim, width,
                       v->dtype, n_groups, cfg->fold);
        }
        chunk *swap = cur;
        cur = next;
        next = swap;
        t = nt;
        i0 = ni0;
    }
}

/* F16C is read from CPUID directly: clang 14's __builtin_cpu_supports does
 * not know the "f16c" feature string. */
static int have_f16c(void)
{
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

/* The widest fast path this CPU runs: 0 none (portable loop), 1 AVX2+FMA+F16C,
 * 2 AVX-512F as well. CPUID traps to the hypervisor in a VM (microseconds),
 * so the answer is computed once and cached; racing first calls store the
 * same value. */
static int cpu_level(void)
{
    static _Atomic int cached = -1;
    int level = atomic_load_explicit(&cached, memory_order_relaxed);
    if (level >= 0)
        return level;
    level = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && have_f16c())
        level = __builtin_cpu_supports("avx512f") ? 2 : 1;
    atomic_store_explicit(&cached, level, memory_order_relaxed);
    return level;
}

/* Software prefetch of the next chunk's rows, by row size (gather.h says
 * where the limits come from): it overlaps the misses of short rows but
 * costs at long ones, where each row is a sequential run the hardware
 * prefetcher follows by itself and the extra streams only evict it. */
static int prefetch_for(const us_gather_opts *opts, us_dtype dtype, size_t row_bytes)
{
    int mode = opts ? opts->prefetch : US_GATHER_PREFETCH;
    if (mode == US_GATHER_PREFETCH_AUTO)
        return row_bytes <= (dtype == US_DTYPE_INT8 ? US_GATHER_PREFETCH_MAX_ROW_BYTES_INT8
                                                    : US_GATHER_PREFETCH_MAX_ROW_BYTES);
    return mode != 0;
}

/* Fills cfg for this call; returns 0 when the portable loop must run. */
static int choose_fold(fold_cfg *cfg, const us_gather_opts *opts, us_dtype dtype,
                       size_t row_bytes)
{
    int level = opts && opts->force_portable ? 0 : cpu_level();
    if (level == 2 && opts && opts->force_avx2)
        level = 1;
    cfg->fold = level == 2 ? fold_rows_avx512 : fold_rows_avx2;
    cfg->prefetch = prefetch_for(opts, dtype, row_bytes);
    return level > 0;
}

static int thread_count(int n_threads, size_t work_items)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if ((size_t)nt > work_items)
        nt = (int)work_items;
    return nt < 1 ? 1 : nt;
}

/* The OpenMP default (n_threads <= 0) is capped so that each thread reads
 * at least US_GATHER_MIN_BYTES_PER_THREAD of rows: waking a team costs
 * microseconds on a quiet machine and a scheduler tick (milliseconds) on an
 * oversubscribed one, more than a small call's whole work. An explicit
 * n_threads is honoured as given. */
static int default_threads_cap(int n_threads, size_t n_rows_read, size_t row_bytes)
{
    if (n_threads > 0)
        return n_threads;
    size_t fit = n_rows_read * row_bytes / US_GATHER_MIN_BYTES_PER_THREAD;
    int nt = omp_get_max_threads();
    if ((size_t)nt > fit)
        nt = fit < 1 ? 1 : (int)fit;
    return nt;
}

/* ---- public entry points ------------------------------------------------ */

/* The sum itself over validated arguments (both public forms end here). */
static void sum_checked(float *out, const us_rows_view *v, const uint64_t *rows,
                        const float *weights, const uint8_t *group, size_t n_tokens,
                        size_t k, int n_groups, int n_threads, const us_gather_opts *opts)
{
    size_t dim = v->dim;
    fold_cfg cfg;
    int fast = choose_fold(&cfg, opts, v->dtype, dim * us_dtype_size(v->dtype));
    n_threads = default_threads_cap(n_threads, n_tokens * k, dim * us_dtype_size(v->dtype));
    /* Fewer tokens than threads (decoding: one token, many pairs): split
     * the columns instead, in whole 64-column tiles. Each column still adds
     * its pairs in order, so results do not change. */
    size_t tiles = (dim + 8 * TILE_VECS - 1) / (8 * TILE_VECS);
    int split_cols = fast && n_threads != 1 && (size_t)thread_count(n_threads, SIZE_MAX) > n_tokens
                     && tiles > 1;
    int nt = thread_count(n_threads, split_cols ? tiles : n_tokens);

    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int me = omp_get_thread_num(), team = omp_get_num_threads();
        if (split_cols) {
            size_t c0 = tiles * (size_t)me / (size_t)team * 8 * TILE_VECS;
            size_t c1 = tiles * (size_t)(me + 1) / (size_t)team * 8 * TILE_VECS;
            sum_tokens_avx2(out, v, rows, weights, group, 0, n_tokens, c0,
                            c1 < dim ? c1 : dim, k, n_groups, &cfg);
        } else if (fast) {
            size_t t0 = n_tokens * (size_t)me / (size_t)team;
            size_t t1 = n_tokens * (size_t)(me + 1) / (size_t)team;
            sum_tokens_avx2(out, v, rows, weights, group, t0, t1, 0, dim, k, n_groups, &cfg);
        } else {
            size_t t0 = n_tokens * (size_t)me / (size_t)team;
            size_t t1 = n_tokens * (size_t)(me + 1) / (size_t)team;
            for (size_t t = t0; t < t1; t++)
                sum_token_scalar(out + t * (size_t)n_groups * dim, v, rows + t * k,
                                 weights + t * k, group ? group + t * k : NULL, k, n_groups);
        }
    }
}

int us_gather_sum_opts(float *out, const us_rows_view *v, const uint64_t *rows,
                       const float *weights, const uint8_t *group,
                       size_t n_tokens, size_t k, int n_groups, int n_threads,
                       const us_gather_opts *opts, us_err *err)
{
    int rc = validate(out, v, rows, weights, group, n_tokens, k, n_groups, err);
    if (rc == US_OK && n_tokens > 0)
        sum_checked(out, v, rows, weights, group, n_tokens, k, n_groups, n_threads, opts);
    return rc;
}

int us_gather_sum_prechecked(float *out, const us_rows_view *v, const uint64_t *rows,
                             const float *weights, const uint8_t *group,
                             size_t n_tokens, size_t k, int n_groups, int n_threads,
                             us_err *err)
{
    int rc = validate_args(out, v, rows, weights, group, n_tokens, k, n_groups, err);
    if (rc == US_OK && n_tokens > 0)
        sum_checked(out, v, rows, weights, group, n_tokens, k, n_groups, n_threads, NULL);
    return rc;
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
    int nt = thread_count(default_threads_cap(n_threads, n, row_bytes), n / 64 + 1);
    uint8_t *dst = out;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (size_t i = 0; i < n; i++) {
        memcpy(dst + i * row_bytes, us_rows_view_row(v, rows[i]), row_bytes);
        if (int8)
            out_scales[i] = us_rows_view_scale(v, rows[i]);
    }
    return US_OK;
}
