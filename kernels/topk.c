/*
 * topk.c — top-k by a size-k min-heap (see topk.h for the order).
 *
 * The heap's root is the worst of the current best k. Elements are scanned in
 * increasing index order, so a newcomer with a score equal to the root's can
 * never beat it (it has the higher index): the entry test is a plain
 * `s > root` while the root is a number. Only when the root is NaN (fewer
 * than k numbers seen so far) does the full order decide.
 */
#include "kernels/topk.h"

#include <stdlib.h>
#include <string.h>

#include <immintrin.h>
#include <omp.h>

typedef struct entry {
    float    val;
    uint32_t idx;
} entry;

/* Min-heap by rank: heap[0] ranks last. */
static inline int ranks_after(entry a, entry b)
{
    return us_topk_before(b.val, b.idx, a.val, a.idx);
}

static void sift_down(entry *heap, size_t n, size_t i)
{
    entry x = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && ranks_after(heap[child + 1], heap[child]))
            child++;
        if (!ranks_after(heap[child], x))
            break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = x;
}

static inline int root_beaten(const entry *heap, float s)
{
    float r = heap[0].val;
    if (r == r)
        return s > r;
    return s == s;          /* root NaN: any number beats it, a later NaN does not */
}

static inline void offer(entry *heap, size_t k, float s, uint32_t i)
{
    if (root_beaten(heap, s)) {
        heap[0].val = s;
        heap[0].idx = i;
        sift_down(heap, k, 0);
    }
}

#define AVX2_TARGET __attribute__((target("avx2")))

/* Scan [from, n) eight at a time: skip a block when no lane beats the root. */
AVX2_TARGET static size_t scan_avx2(entry *heap, size_t k, const float *scores, size_t from,
                                    size_t n)
{
    size_t i = from;
    for (; i + 8 <= n; i += 8) {
        float r = heap[0].val;
        if (r == r) {
            __m256 gt = _mm256_cmp_ps(_mm256_loadu_ps(scores + i), _mm256_set1_ps(r),
                                      _CMP_GT_OQ);
            if (_mm256_movemask_ps(gt) == 0)
                continue;
        }
        for (size_t j = i; j < i + 8; j++)
            offer(heap, k, scores[j], (uint32_t)j);
    }
    return i;
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

static int check_args(const uint32_t *out_idx, const float *scores, size_t n, size_t k,
                      us_err *err)
{
    if (k == 0)
        return US_OK;
    if (k > US_TOPK_MAX_K)
        return us_err_set(err, US_EINVAL, "top-k: k %zu > %d", k, US_TOPK_MAX_K);
    if (k > n)
        return us_err_set(err, US_EINVAL, "top-k: k %zu > n %zu", k, n);
    if (n > UINT32_MAX)
        return us_err_set(err, US_EINVAL, "top-k: n %zu does not fit 32-bit indices", n);
    if (out_idx == NULL || scores == NULL)
        return us_err_set(err, US_EINVAL, "top-k: NULL output or scores");
    return US_OK;
}

/* Heap-based top-k of one row; arguments already checked, k >= 1. */
static void topk_one(uint32_t *out_idx, float *out_val, const float *scores, size_t n,
                     size_t k, int avx2)
{
    entry heap[US_TOPK_MAX_K];
    for (size_t i = 0; i < k; i++) {
        heap[i].val = scores[i];
        heap[i].idx = (uint32_t)i;
    }
    for (size_t i = k / 2; i-- > 0;)
        sift_down(heap, k, i);
    size_t i = k;
    if (avx2)
        i = scan_avx2(heap, k, scores, i, n);
    for (; i < n; i++)
        offer(heap, k, scores[i], (uint32_t)i);
    /* Pop the worst to the back: best first in the output. */
    for (size_t m = k; m > 0; m--) {
        entry worst = heap[0];
        heap[0] = heap[m - 1];
        sift_down(heap, m - 1, 0);
        out_idx[m - 1] = worst.idx;
        if (out_val)
            memcpy(&out_val[m - 1], &worst.val, sizeof(float));
    }
}

int us_topk(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
            us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0)
        return rc;
    topk_one(out_idx, out_val, scores, n, k, have_avx2());
    return US_OK;
}

int us_topk_rows(uint32_t *out_idx, float *out_val, const float *scores, size_t n_rows,
                 size_t n, size_t ld, size_t k, int n_threads, us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0 || n_rows == 0)
        return rc;
    if (ld < n)
        return us_err_set(err, US_EINVAL, "top-k rows: ld %zu < n %zu", ld, n);
    int avx2 = have_avx2();
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if ((size_t)nt > n_rows)
        nt = (int)n_rows;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (size_t r = 0; r < n_rows; r++)
        topk_one(out_idx + r * k, out_val ? out_val + r * k : NULL, scores + r * ld, n, k, avx2);
    return US_OK;
}

/* ---- reference: sort everything ---------------------------------------- */

static int cmp_entry(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (us_topk_before(a->val, a->idx, b->val, b->idx))
        return -1;
    if (us_topk_before(b->val, b->idx, a->val, a->idx))
        return 1;
    return 0;
}

int us_topk_ref(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
                us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0)
        return rc;
    entry *all = malloc(n * sizeof *all);
    if (all == NULL)
        return us_err_set(err, US_ENOMEM, "top-k reference: %zu entries", n);
    for (size_t i = 0; i < n; i++) {
        all[i].val = scores[i];
        all[i].idx = (uint32_t)i;
    }
    qsort(all, n, sizeof *all, cmp_entry);
    for (size_t i = 0; i < k; i++) {
        out_idx[i] = all[i].idx;
        if (out_val)
            memcpy(&out_val[i], &all[i].val, sizeof(float));
    }
    free(all);
    return US_OK;
}

int us_topk_rows_ref(uint32_t *out_idx, float *out_val, const float *scores, size_t n_rows,
                     size_t n, size_t ld, size_t k, us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0)
        return rc;
    if (ld < n)
        return us_err_set(err, US_EINVAL, "top-k rows: ld %zu < n %zu", ld, n);
    for (size_t r = 0; r < n_rows; r++)
        if ((rc = us_topk_ref(out_idx + r * k, out_val ? out_val + r * k : NULL,
                              scores + r * ld, n, k, err)) != US_OK)
            return us_err_prefix(err, "row %zu", r);
    return US_OK;
}
