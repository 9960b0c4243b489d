/*
 * score.h — product-key scoring: which rows of a memory table each token reads.
 *
 * A table of n_rows * n_cols values is addressed by a pair (i, j), row id
 * i * n_cols + j. Each head scores a token's row query against the row
 * sub-keys and its column query against the column sub-keys, with ONE
 * cblas_sgemm per head and side for the whole batch of T tokens, then
 * combines per token:
 *
 *   US_PK_SUM (PKM, Lample et al. 2019), rank must be 1:
 *     s_row[i] = q_row . K_row[i],  s_col[j] = q_col . K_col[j]
 *     top-k' of s_row and of s_col; the k'*k' candidates s_row[i] + s_col[j];
 *     final top-k. Exact: equals the top-k over all n_rows*n_cols sums
 *     whenever k <= k' (each of the k best pairs has both halves in the
 *     top-k' of its side).
 *
 *   US_PK_TUCKER (TDQKR, UltraMem): r key sets per side,
 *     S_row[a, i] = q_row . K_row[a][i],  S_col[b, j] = q_col . K_col[b][j]
 *     S_grid[i, j] = sum_ab S_row[a, i] C[a, b] S_col[b, j].
 *     Preselection with the rank-1 approximation C ~ u t^T: top-k' of
 *     u^T S_row and of t^T S_col; the k'*k' candidates are rescored exactly
 *     with C; final top-k. (u, t) = (C t1, t1) where t1 is the dominant right
 *     singular vector of C, found by 100 steps of power iteration on C^T C in
 *     double, starting from the all-ones vector (any r; for r = 2 this
 *     converges to the closed form's answer). Sign: chosen so that sum(u) >= 0
 *     (u t^T == (-u)(-t)^T; the convention makes the choice deterministic).
 *     If C = 0, u = t = 0 and the preselection takes the lowest indices.
 *     See us_pk_rank1().
 *
 *   Multi-core scoring (MCS, n_cores = m > 1, Tucker only): m cores C_0..C_m-1
 *     give m scores per selected value. Selection (preselection and final
 *     top-k) uses the summed core sum_c C_c, which by linearity ranks by the
 *     sum of the m scores; then each core's exact score is reported for the
 *     selected values, so the caller can weight core c's slice of the value
 *     vector with its own score (UltraMem's mapping is unverified; this is the
 *     natural reading).
 *
 * Order and ties: final results are best first; equal scores go to the
 * lower row id; NaN scores rank lowest (kernels/topk.h). This order does not
 * depend on the algorithm: the top-k' lists are re-sorted by index before the
 * candidate grid is built, so grid position order equals row-id order.
 *
 * Activation (per token, head and core, over the k final scores):
 * US_PK_ACT_NONE reports raw scores; US_PK_ACT_SOFTMAX reports
 * exp(s - max) / sum (NaN in, NaN out; all -Inf gives NaN).
 *
 * Shapes (row-major, llm.c style; T tokens, H heads, d = d_key, r = rank,
 * m = n_cores):
 *   q          [T][H][2][d]    row query then column query of each head
 *   k_row      [H][r][n_rows][d]
 *   k_col      [H][r][n_cols][d]
 *   core       [H][m][r][r]    Tucker only (NULL for US_PK_SUM)
 *   out_idx    [T][H][k]       row ids i * n_cols + j (directly the `rows`
 *                              of us_gather_sum with k_total = H * k)
 *   out_scores [m][T][H][k]    core c's block is the `weights` array that
 *                              matches out_idx
 *
 * Memory: no allocation in us_pk_score. The caller passes a workspace of at
 * least us_pk_workspace_bytes(shape, n_threads) bytes (any alignment; it is
 * aligned inside), holding score matrices plus per-thread scratch; chunk T
 * to bound it. Threads: n_threads OpenMP threads (<= 0: OpenMP default).
 * With one thread, or OpenBLAS's OpenMP build and n_threads dividing H,
 * each thread scores whole heads: a head's sgemms (single-threaded inside
 * the parallel region), then its combination; the workspace holds one
 * head's matrices per thread (T * r * (n_rows + n_cols) floats each).
 * Otherwise the sgemms use OpenBLAS's threads over all heads at once (H
 * times that) and only the combination runs on ours. Results do not depend
 * on the thread count or the build.
 *
 * Errors (US_EINVAL, outputs unchanged): NULL pointers, non-positive sizes,
 * k' > min(n_rows, n_cols) or > US_TOPK_MAX_K, k > k'^2 or > US_TOPK_MAX_K,
 * rank or n_cores out of [1, US_PK_MAX_RANK/US_PK_MAX_CORES], SUM mode with
 * rank or n_cores != 1, workspace too small (message gives the size needed).
 * NaN/Inf in q, keys or cores propagate into scores and never crash.
 */
#ifndef US_SCORE_H
#define US_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

#define US_PK_MAX_RANK  16
#define US_PK_MAX_CORES 16

typedef enum us_pk_mode {
    US_PK_SUM    = 0,   /* PKM: s_row + s_col */
    US_PK_TUCKER = 1,   /* TDQKR: S_row^T C S_col with rank-1 preselection */
} us_pk_mode;

typedef enum us_pk_activation {
    US_PK_ACT_NONE    = 0,
    US_PK_ACT_SOFTMAX = 1,
} us_pk_activation;

typedef struct us_pk_shape {
    int n_tokens;               /* T */
    int n_heads;                /* H */
    int d_key;                  /* d: per-side query and sub-key length */
    int n_rows;                 /* row sub-keys per set */
    int n_cols;                 /* column sub-keys per set */
    int rank;                   /* r: key sets per side (1 for US_PK_SUM) */
    int n_cores;                /* m: Tucker cores (MCS); 1 = plain */
    int k_pre;                  /* k': candidates kept per side */
    int k;                      /* final top-k per token and head */
    us_pk_mode mode;
    us_pk_activation activation;
} us_pk_shape;

/* Returns: US_OK if the shape is valid; US_EINVAL naming the bad field (see
 * Errors above), including a NULL shape. */
int us_pk_shape_check(const us_pk_shape *shape, us_err *err);

/* Returns: bytes of workspace us_pk_score needs for this shape and thread
 * count (n_threads <= 0: OpenMP default); 0 if the shape is invalid. */
size_t us_pk_workspace_bytes(const us_pk_shape *shape, int n_threads);

/* Returns: US_OK; US_EINVAL for an invalid shape, NULL pointers, a Tucker
 * shape without a core or a workspace smaller than us_pk_workspace_bytes
 * (outputs unchanged). */
int us_pk_score(uint64_t *out_idx, float *out_scores, const float *q,
                const float *k_row, const float *k_col, const float *core,
                const us_pk_shape *shape, void *workspace, size_t workspace_bytes,
                int n_threads, us_err *err);

/* Scalar reference: plain loops instead of BLAS, sort-based top-k, one
 * thread; same algorithm and contract. Allocates (tests only).
 * Returns: as us_pk_score, plus US_ENOMEM when its buffer cannot be
 * allocated. */
int us_pk_score_ref(uint64_t *out_idx, float *out_scores, const float *q,
                    const float *k_row, const float *k_col, const float *core,
                    const us_pk_shape *shape, us_err *err);

/* Test hook: 0 sends PKM's final top-k through the k'^2 grid (the path
 * ties take) instead of the pairs above the dominance bound; 1, the
 * default, allows both. Results never depend on it.
 * Returns: nothing; cannot fail. */
void us_pk_allow_pairs(int on);

/* Rank-1 factors of an r x r core (row-major): C ~ u t^T as described above.
 * Writes u[r] and t[r] (t has unit norm unless C = 0).
 * Returns: nothing; cannot fail. */
void us_pk_rank1(float *u, float *t, const float *core, int r);

#endif
