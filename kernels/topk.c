/*
 * topk.c — top-k by insertion into a sorted array (see topk.h for the order).
 *
 * The current best k are kept sorted, best first; the last one is the
 * threshold. Elements are scanned in increasing index order, so a newcomer
 * never beats an element of equal score (it has the higher index), and its
 * place is found by shifting worse entries down from the end: a predictable
 * loop, unlike a heap's sift-down whose branches are coin flips (measured:
 * the heap version spent most of its time there). For random scores only
 * about k*ln(n/k) elements ever enter, and with AVX2 (run-time dispatch) the
 * scan compares eight scores at a time against the threshold and skips the
 * block when none beats it. Worst case (ascending input) is O(n*k).
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

/* Does a newcomer (score s, higher index than every kept entry) rank before
 * kept entry e? Equal scores: no (index order). NaN ranks last. */
static inline int newcomer_before(float s, entry e)
{
    if (s != s)
        return 0;
    return e.val != e.val || s > e.val;
}

/* top[0..*m) sorted best first, capacity k: offer (s, i). */
static inline void offer(entry *top, size_t *m, size_t k, float s, uint32_t i)
{
    size_t j = *m;
    if (j == k) {
        if (!newcomer_before(s, top[k - 1]))
            return;
        j = k - 1;                       /* the old last entry drops out */
    } else {
        (*m)++;
    }
    while (j > 0 && newcomer_before(s, top[j - 1])) {
        top[j] = top[j - 1];
        j--;
    }
    top[j].val = s;
    top[j].idx = i;
}

#define AVX2_TARGET __attribute__((target("avx2")))

/* Scan [from, n) eight at a time: skip a block when no lane beats the
 * threshold (only while the threshold is a number). */
AVX2_TARGET static size_t scan_avx2(entry *top, size_t *m, size_t k, const float *scores,
                                    size_t from, size_t n)
{
    size_t i = from;
    for (; i + 8 <= n; i += 8) {
        float r = top[k - 1].val;
        if (r == r) {
            __m256 gt = _mm256_cmp_ps(_mm256_loadu_ps(scores + i), _mm256_set1_ps(r),
                                      _CMP_GT_OQ);
            if (_mm256_movemask_ps(gt) == 0)
                continue;
        }
        for (size_t j = i; j < i + 8; j++)
            offer(top, m, k, scores[j], (uint32_t)j);
    }
    return i;
}

/* Numbers only (no NaN anywhere in top or s): the insertion without NaN tests. */
static inline void offer_number(entry *top, size_t *m, size_t k, float s, uint32_t i)
{
    size_t j = *m;
    if (j == k) {
        if (!(s > top[k - 1].val))
            return;
        j = k - 1;
    } else {
        (*m)++;
    }
    while (j > 0 && s > top[j - 1].val) {
        top[j] = top[j - 1];
        j--;
    }
    top[j].val = s;
    top[j].idx = i;
}

/* The k-th largest of a[0..n) (1 <= k <= n, no NaN), by quickselect with a
 * middle pivot; reorders a. */
static float kth_largest(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {                 /* Hoare partition, descending */
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;                       /* want sits between: equals pivot */
    }
    return a[want];
}

/*
 * Filter then select. Split the scores into nb >= k blocks (up to 4k blocks
 * of at least 8) and take the largest number of each block: these are nb
 * distinct elements, so at least k numbers are >= t0 = the k-th largest
 * block maximum, i.e. t0 is a lower bound of the k-th best score. Only
 * scores >= t0 can be in the result; they are offered in index order, which
 * gives exactly the result of the full scan (ties and all). With 4k blocks
 * typically 1.5k candidates remain (k blocks: ~3.5k), so the cost is two
 * vector passes plus a few insertions. Returns 0 (caller falls back to the
 * full scan) when the bound is useless (t0 = -Inf, e.g. blocks full of NaN).
 */
AVX2_TARGET static int topk_filtered_avx2(entry *top, size_t k, const float *scores, size_t n)
{
    size_t nb = 4 * k;
    if (n / 8 < nb)
        nb = n / 8;
    if (nb < k)
        return 0;
    size_t bs = n / nb / 8 * 8;
    const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
    float maxima[4 * US_TOPK_MAX_K];
    for (size_t b = 0; b < nb; b++) {
        const float *p = scores + b * bs;
        __m256 mx = neg_inf;
        for (size_t i = 0; i < bs; i += 8) {
            __m256 v = _mm256_loadu_ps(p + i);
            v = _mm256_blendv_ps(v, neg_inf, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));  /* NaN */
            mx = _mm256_max_ps(mx, v);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        maxima[b] = _mm_cvtss_f32(m4);
    }
    float t0 = kth_largest(maxima, nb, k);
    if (t0 == -__builtin_inff())
        return 0;
    size_t m = 0, i = 0;
    __m256 tv = _mm256_set1_ps(t0);
    for (; i + 8 <= n; i += 8) {
        unsigned mask = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(scores + i), tv, _CMP_GE_OQ));
        while (mask) {
            unsigned j = (unsigned)__builtin_ctz(mask);
            offer_number(top, &m, k, scores[i + j], (uint32_t)(i + j));
            mask &= mask - 1;
        }
    }
    for (; i < n; i++)
        if (scores[i] >= t0)
            offer_number(top, &m, k, scores[i], (uint32_t)i);
    return m == k;      /* always true by the bound; checked, not assumed */
}

static int have_avx2(void)
{
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

/* Top-k of one row; arguments already checked, 1 <= k <= n. */
static void topk_one(uint32_t *out_idx, float *out_val, const float *scores, size_t n,
                     size_t k, int avx2)
{
    entry top[US_TOPK_MAX_K];
    size_t m = 0, i = 0;
    if (avx2 && topk_filtered_avx2(top, k, scores, n))
        goto done;
    for (; i < k; i++)
        offer(top, &m, k, scores[i], (uint32_t)i);
    if (avx2)
        i = scan_avx2(top, &m, k, scores, i, n);
    for (; i < n; i++)
        offer(top, &m, k, scores[i], (uint32_t)i);
done:
    for (size_t j = 0; j < k; j++) {
        out_idx[j] = top[j].idx;
        if (out_val)
            memcpy(&out_val[j], &top[j].val, sizeof(float));
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
