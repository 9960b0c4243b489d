/*
 * topk.h — deterministic top-k selection over f32 scores.
 *
 * Order (a total order, so results never depend on the algorithm):
 *   1. higher score first;
 *   2. equal scores (== compare, so -0.0 and +0.0 are equal) go to the lower
 *      index first;
 *   3. NaN ranks below every number, including -Inf; NaNs among themselves go
 *      by index. A NaN is therefore selected only when fewer than k
 *      non-NaN scores exist.
 * Output: out_idx[0..k-1] (indices into scores) and out_val[0..k-1] (the
 * scores, bit-copied), best first. out_val may be NULL.
 *
 * Fast path: with AVX2 or AVX-512F+BW (run-time dispatch), a lower bound of
 * the k-th best score from block maxima (or the caller's, us_topk_hint) and
 * one vector pass that keeps only the scores at or above it (typically
 * 1-1.5 k of them), each then placed by its rank among them (branch-free
 * counting). Without AVX2 every element is offered to a list kept sorted by
 * insertion. The list is a fixed array on the stack: k <= US_TOPK_MAX_K, no
 * allocation. Cost O(n) for typical scores, O(n*k)
 * worst case (ascending input). The result never depends on the path.
 * Reference: sort of all n (score, index) pairs with the same order (it
 * allocates n pairs; tests only).
 *
 * Errors: k > n, k > US_TOPK_MAX_K, n > UINT32_MAX or NULL pointers ->
 * US_EINVAL; outputs unchanged. k == 0 is a no-op.
 */
#ifndef US_TOPK_H
#define US_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define US_TOPK_MAX_K 256

/* Returns: US_OK (k = 0: nothing written); US_EINVAL when k > n,
 * k > US_TOPK_MAX_K, n > UINT32_MAX or a pointer is NULL (outputs unchanged). */
int us_topk(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
            us_err *err);

/* Batched: row r of scores is scores + r*ld (ld >= n), its result goes to
 * out_idx + r*k and out_val + r*k. Parallel over rows: n_threads as given,
 * or (<= 0) the OpenMP default reduced to one thread per 64 Ki scores.
 * Returns: as us_topk, plus US_EINVAL when ld < n. */
int us_topk_rows(uint32_t *out_idx, float *out_val, const float *scores, size_t n_rows,
                 size_t n, size_t ld, size_t k, int n_threads, us_err *err);

/* As us_topk, with a caller's lower bound of the k-th best score (e.g. the
 * k-th best of any k of the scores, see us_topk_bound): the filter then
 * keeps the scores >= bound instead of computing its own bound. The result
 * never depends on the bound: one that is not a number > -Inf, or too high
 * (fewer than k scores reach it), or too weak, falls back to the usual path.
 * Returns: as us_topk. */
int us_topk_hint(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
                 float bound, us_err *err);

/* The same selection as us_topk, as a set in index order: out_idx[0..k)
 * ascending, out_rank[q] = the position out_idx[q] has in us_topk's
 * best-first output. (Product-key scoring needs its candidates in index
 * order for ties, and their score order for a bound: one pass gives both.)
 * Returns: as us_topk, plus US_EINVAL when out_rank is NULL (k > 0). */
int us_topk_set(uint32_t *out_idx, uint32_t *out_rank, const float *scores, size_t n, size_t k,
                us_err *err);

/* A number <= the k-th largest of v[0..n) (NaN counts below every number),
 * within 2^-8 relative of it when that is a normal number; -Inf when k == 0,
 * k > n, n > 2048, fewer than k numbers, v is NULL or the CPU lacks AVX2 (no
 * fast path to feed).
 * Returns: the bound; cannot fail. */
float us_topk_bound(const float *v, size_t n, size_t k);

/* The k best of c candidates whose scores are distinct numbers, best first:
 * out_key[r] = key[i] and out_val[r] = val[i] for the candidate ranked r.
 * For callers that enumerate their own candidates (product-key pairs) and
 * order ties their own way: this only ranks by score.
 * Returns: 1 when done; 0 (outputs unspecified) when two scores are equal or
 * one is NaN, c < k, k == 0, c > 4 US_TOPK_MAX_K + 64 or a pointer is NULL;
 * cannot fail otherwise. */
int us_topk_distinct(uint32_t *out_key, float *out_val, const float *val, const uint32_t *key,
                     size_t c, size_t k);

/* Scalar references (full sort).
 * Returns: as us_topk / us_topk_rows, plus US_ENOMEM when the n sort
 * entries cannot be allocated. */
int us_topk_ref(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
                us_err *err);
int us_topk_set_ref(uint32_t *out_idx, uint32_t *out_rank, const float *scores, size_t n,
                    size_t k, us_err *err);
int us_topk_rows_ref(uint32_t *out_idx, float *out_val, const float *scores, size_t n_rows,
                     size_t n, size_t ld, size_t k, us_err *err);

/* Test hook: use at most this instruction set (0 portable scan, 1 AVX2,
 * 2 AVX-512F+BW, the default: the widest the CPU has). Results never depend
 * on it. Returns: nothing; cannot fail. */
void us_topk_limit_isa(int level);

/* The order above as a predicate.
 * Returns: 1 if (a, ia) ranks strictly before (b, ib), else 0; cannot fail. */
static inline int us_topk_before(float a, uint32_t ia, float b, uint32_t ib)
{
    int a_nan = a != a, b_nan = b != b;
    if (a_nan != b_nan)
        return b_nan;
    if (!a_nan && a != b)
        return a > b;
    return ia < ib;
}

#endif
