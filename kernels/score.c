/*
 * score.c — product-key scoring (see score.h for the contract and shapes).
 *
 * Two phases. (1) Score matrices: per head and side one sgemm
 * S[T x (r*n)] = Q[T x d] * K[(r*n) x d]^T, Q read in place from q with a
 * leading dimension of 2*H*d. (2) Per (token, head) combination, each
 * thread with its own slice of the workspace. Threads run both phases for
 * whole heads so the scores are combined from the core's cache where the
 * sgemm left them; with OpenBLAS's pthread build, or threads that do not
 * divide the heads, one pass over all heads instead (make_layout).
 *
 * The combination code is shared by the fast path and the reference; they
 * differ in phase (1) (BLAS vs plain loops) and in the top-k used (filtered
 * insertion vs full sort), which are the parts worth testing against each
 * other. The independent check of the combination itself is the numpy
 * reference (tests/ref/kernels_ref.py) and the brute-force exactness test of
 * PKM.
 */
#include "kernels/score.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "kernels/topk.h"

typedef int (*topk_set_fn)(uint32_t *, uint32_t *, const float *, size_t, size_t, us_err *);
typedef int (*topk_hint_fn)(uint32_t *, float *, const float *, size_t, size_t, float, us_err *);

int us_pk_shape_check(const us_pk_shape *s, us_err *err)
{
    if (s == NULL)
        return us_err_set(err, US_EINVAL, "pk score: shape is NULL");
    if (s->n_tokens < 1 || s->n_heads < 1 || s->d_key < 1 || s->n_rows < 1 || s->n_cols < 1)
        return us_err_set(err, US_EINVAL, "pk score: sizes must be >= 1 (T %d, H %d, d %d, "
                          "n_rows %d, n_cols %d)", s->n_tokens, s->n_heads, s->d_key,
                          s->n_rows, s->n_cols);
    if (s->mode != US_PK_SUM && s->mode != US_PK_TUCKER)
        return us_err_set(err, US_EINVAL, "pk score: unknown mode %d", (int)s->mode);
    if (s->activation != US_PK_ACT_NONE && s->activation != US_PK_ACT_SOFTMAX)
        return us_err_set(err, US_EINVAL, "pk score: unknown activation %d", (int)s->activation);
    if (s->rank < 1 || s->rank > US_PK_MAX_RANK)
        return us_err_set(err, US_EINVAL, "pk score: rank %d not in [1, %d]", s->rank,
                          US_PK_MAX_RANK);
    if (s->n_cores < 1 || s->n_cores > US_PK_MAX_CORES)
        return us_err_set(err, US_EINVAL, "pk score: n_cores %d not in [1, %d]", s->n_cores,
                          US_PK_MAX_CORES);
    if (s->mode == US_PK_SUM && (s->rank != 1 || s->n_cores != 1))
        return us_err_set(err, US_EINVAL, "pk score: sum mode needs rank 1 and 1 core "
                          "(got rank %d, %d cores)", s->rank, s->n_cores);
    int side_min = s->n_rows < s->n_cols ? s->n_rows : s->n_cols;
    if (s->k_pre < 1 || s->k_pre > side_min || s->k_pre > US_TOPK_MAX_K)
        return us_err_set(err, US_EINVAL, "pk score: k' %d not in [1, min(n_rows, n_cols, %d)"
                          " = %d]", s->k_pre, US_TOPK_MAX_K,
                          side_min < US_TOPK_MAX_K ? side_min : US_TOPK_MAX_K);
    if (s->k < 1 || (long)s->k > (long)s->k_pre * s->k_pre || s->k > US_TOPK_MAX_K)
        return us_err_set(err, US_EINVAL, "pk score: k %d not in [1, min(k'^2 = %ld, %d)]",
                          s->k, (long)s->k_pre * s->k_pre, US_TOPK_MAX_K);
    return US_OK;
}

/* ---- workspace layout ---------------------------------------------------- */

/* Pairs (a, b) of preselection ranks below k' with (a+1)(b+1) <= k: the
 * grid scores dominance_bound reads. len[a] (if len is not NULL) = how many
 * b pair with a, computed once per call (a division per rank and token was
 * a tenth of the combination's own time). Returns: the number of pairs
 * (119 for k = k' = 32). */
static size_t dominance_pairs(uint16_t *len, size_t kp, size_t k)
{
    size_t m = 0;
    for (size_t a = 0; a < kp; a++) {
        size_t nb = k / (a + 1) < kp ? k / (a + 1) : kp;
        if (len)
            len[a] = (uint16_t)nb;
        m += nb;
    }
    return m;
}

/* pkm_final keeps at most 4k pairs (then the grid path runs) and writes a
 * whole row of k' past the last one. */
static size_t pair_room(const us_pk_shape *s)
{
    return 4 * (size_t)s->k + (size_t)s->k_pre;
}

#define ALIGN_BYTES 64
static size_t align_up(size_t n) { return (n + ALIGN_BYTES - 1) & ~(size_t)(ALIGN_BYTES - 1); }

typedef struct layout {
    size_t s_row_bytes, s_col_bytes;    /* score matrices of one pass (per thread: units) */
    int    units;                       /* threads run whole heads (see make_layout) */
    size_t head_bytes;                  /* per head: csum, u, t */
    size_t matrix_bytes;                /* all score matrices (units: one set per thread) */
    size_t thread_bytes;                /* per thread scratch */
    int    n_threads;
    size_t total;
} layout;

/* Per-thread scratch, carved from one slice. */
typedef struct scratch {
    float    *pre_row, *pre_col;        /* preselection scores (Tucker) */
    uint32_t *top_row, *top_col;        /* k' indices per side */
    uint32_t *rank_row, *rank_col;      /* score rank of each of the k' */
    uint32_t *pos_row, *pos_col;        /* inverse: index-order position of rank q */
    float    *dom;                      /* grid scores of the dominance bound */
    float    *p_row;                    /* [k'][r]: S_row[:, i]^T C */
    float    *col_sel;                  /* [r][k']: S_col[b, j] of selected j */
    float    *grid;                     /* [k'][k'] candidate scores */
    float    *pair_val;                 /* PKM: pairs >= the bound (pkm_final) */
    uint32_t *pair_pos;                 /* their grid positions */
    uint32_t *fin_idx;                  /* final k grid positions */
    uint32_t *fin_row, *fin_col;        /* their row and column ids */
    float    *fin_val;
} scratch;

static int resolve_threads(const us_pk_shape *s, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    long items = (long)s->n_tokens * s->n_heads;
    if (nt > items)
        nt = (int)items;
    return nt < 1 ? 1 : nt;
}

/* How the threads share the work. Units (a head each: its sgemms on the
 * thread, single-threaded inside our parallel region, then its combination
 * from that core's cache) with one thread, or with OpenBLAS's OpenMP build
 * (openblas_get_parallel() == 2) when the threads divide the heads evenly.
 * Otherwise one pass over all heads, the sgemms threaded by OpenBLAS: its
 * pthread build would start its own pool under ours, and splitting a head's
 * tokens into blocks changes which rows fall into the sgemm's edge tiles,
 * hence the rounding (results must not depend on the thread count). */
static layout make_layout(const us_pk_shape *s, int n_threads)
{
    layout L;
    size_t T = (size_t)s->n_tokens, H = (size_t)s->n_heads, r = (size_t)s->rank;
    size_t kp = (size_t)s->k_pre;
    L.n_threads = resolve_threads(s, n_threads);
    L.units = L.n_threads == 1 ||
              (openblas_get_parallel() == 2 && s->n_heads % L.n_threads == 0);
    size_t rows = L.units ? T : H * T;
    size_t sets = L.units ? (size_t)L.n_threads : 1;
    L.s_row_bytes = align_up(rows * r * (size_t)s->n_rows * sizeof(float));
    L.s_col_bytes = align_up(rows * r * (size_t)s->n_cols * sizeof(float));
    L.head_bytes = align_up((r * r + 2 * r) * sizeof(float));
    L.thread_bytes = align_up((size_t)s->n_rows * 4) + align_up((size_t)s->n_cols * 4) +
                     6 * align_up(kp * 4) + 2 * align_up(kp * r * 4) +
                     align_up(kp * kp * 4) + 2 * align_up(pair_room(s) * 4) +
                     4 * align_up((size_t)s->k * 4) +
                     align_up(dominance_pairs(NULL, kp, (size_t)s->k) * 4);
    L.matrix_bytes = sets * (L.s_row_bytes + L.s_col_bytes);
    L.total = ALIGN_BYTES + L.matrix_bytes + H * L.head_bytes +
              (size_t)L.n_threads * L.thread_bytes;
    return L;
}

size_t us_pk_workspace_bytes(const us_pk_shape *shape, int n_threads)
{
    if (us_pk_shape_check(shape, NULL) != US_OK)
        return 0;
    return make_layout(shape, n_threads).total;
}

static scratch carve_scratch(uint8_t *p, const us_pk_shape *s)
{
    scratch x;
    size_t kp = (size_t)s->k_pre, r = (size_t)s->rank;
#define CARVE(field, type, count) \
    do { x.field = (type *)(void *)p; p += align_up((size_t)(count) * 4); } while (0)
    CARVE(pre_row, float, s->n_rows);
    CARVE(pre_col, float, s->n_cols);
    CARVE(top_row, uint32_t, kp);
    CARVE(top_col, uint32_t, kp);
    CARVE(rank_row, uint32_t, kp);
    CARVE(rank_col, uint32_t, kp);
    CARVE(pos_row, uint32_t, kp);
    CARVE(pos_col, uint32_t, kp);
    CARVE(dom, float, dominance_pairs(NULL, kp, (size_t)s->k));
    CARVE(p_row, float, kp * r);
    CARVE(col_sel, float, kp * r);
    CARVE(grid, float, kp * kp);
    CARVE(pair_val, float, pair_room(s));
    CARVE(pair_pos, uint32_t, pair_room(s));
    CARVE(fin_idx, uint32_t, s->k);
    CARVE(fin_row, uint32_t, s->k);
    CARVE(fin_col, uint32_t, s->k);
    CARVE(fin_val, float, s->k);
#undef CARVE
    return x;
}

/* ---- rank-1 factors of a core -------------------------------------------- */

void us_pk_rank1(float *u, float *t, const float *core, int r)
{
    double c[US_PK_MAX_RANK * US_PK_MAX_RANK], a[US_PK_MAX_RANK * US_PK_MAX_RANK];
    double v[US_PK_MAX_RANK], w[US_PK_MAX_RANK];
    for (int i = 0; i < r * r; i++)
        c[i] = core[i];
    for (int i = 0; i < r; i++)              /* a = C^T C */
        for (int j = 0; j < r; j++) {
            double s = 0;
            for (int k = 0; k < r; k++)
                s += c[k * r + i] * c[k * r + j];
            a[i * r + j] = s;
        }
    for (int i = 0; i < r; i++)
        v[i] = 1.0 / sqrt((double)r);
    for (int it = 0; it < 100; it++) {
        double norm = 0;
        for (int i = 0; i < r; i++) {
            double s = 0;
            for (int j = 0; j < r; j++)
                s += a[i * r + j] * v[j];
            w[i] = s;
            norm += s * s;
        }
        norm = sqrt(norm);
        if (!(norm > 0) || !isfinite(norm)) {
            /* all-ones is orthogonal to the dominant space (or C = 0 / not
             * finite): restart once from the basis vector of C's largest
             * column, else give up with zeros */
            if (it > 0 || !(norm == 0))
                break;
            int best = 0;
            for (int j = 1; j < r; j++)
                if (a[j * r + j] > a[best * r + best])
                    best = j;
            for (int i = 0; i < r; i++)
                v[i] = i == best ? 1.0 : 0.0;
            if (!(a[best * r + best] > 0))
                break;
            continue;
        }
        for (int i = 0; i < r; i++)
            v[i] = w[i] / norm;
    }
    double su = 0, ud[US_PK_MAX_RANK];
    for (int i = 0; i < r; i++) {
        double s = 0;
        for (int j = 0; j < r; j++)
            s += c[i * r + j] * v[j];
        ud[i] = s;
        su += s;
    }
    double sign = su < 0 ? -1.0 : 1.0;
    for (int i = 0; i < r; i++) {
        u[i] = (float)(sign * ud[i]);
        t[i] = (float)(sign * v[i]);
    }
}

/* ---- per-token combination (shared by fast path and reference) ---------- */

/* The reference's final top-k: the full sort, whatever the bound. */
static int topk_hint_ref(uint32_t *out_idx, float *out_val, const float *scores, size_t n,
                         size_t k, float bound, us_err *err)
{
    (void)bound;
    return us_topk_ref(out_idx, out_val, scores, n, k, err);
}

typedef struct ctx {
    const us_pk_shape *s;
    const float *s_row, *s_col;     /* the current pass's scores, [heads][T][r*n] */
    int first_head;                 /* the pass's first head */
    const float *core;              /* [H][m][r][r] or NULL */
    const float *heads;             /* per head: csum[r*r], u[r], t[r] */
    size_t head_stride;             /* floats between heads in `heads` */
    uint64_t *out_idx;
    float *out_scores;
    topk_set_fn topk_set;           /* preselection: index order + ranks */
    topk_hint_fn topk_hint;         /* final: with a caller's bound */
    int pkm_pairs;                  /* PKM's final top-k by pkm_final (not the reference) */
    uint16_t dom_len[US_TOPK_MAX_K]; /* dominance_pairs' len */
} ctx;

static void softmax_inplace(float *x, size_t n)
{
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max || x[i] != x[i])
            max = x[i];
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (size_t i = 0; i < n; i++)
        x[i] /= sum;
}

/* The helpers below are force-inlined into combine so that each of its
 * target clones gets its own (AVX2 or baseline) copy of their loops; an
 * out-of-line call would run the baseline code from the AVX2 clone. */
#define COMBINE_INLINE static inline __attribute__((always_inline))

/* Tucker preselection scores: pre_row[i] = sum_a u[a] S_row[a][i], and the
 * same with t over the columns. omp simd: the compiler cannot prove pre_row
 * and sr apart. */
COMBINE_INLINE void tucker_preselect(float *pre_row, float *pre_col,
                                     const float *sr, const float *sc, const float *u,
                                     const float *t, size_t r, size_t nr, size_t nc)
{
    if (r == 2) {                        /* the usual rank: straight-line, 8 wide */
        const float *s1 = sr + nr, *c1 = sc + nc;
        #pragma omp simd
        for (size_t i = 0; i < nr; i++)
            pre_row[i] = u[0] * sr[i] + u[1] * s1[i];
        #pragma omp simd
        for (size_t j = 0; j < nc; j++)
            pre_col[j] = t[0] * sc[j] + t[1] * c1[j];
        return;
    }
    #pragma omp simd
    for (size_t i = 0; i < nr; i++) {
        float acc = u[0] * sr[i];
        for (size_t a = 1; a < r; a++)
            acc += u[a] * sr[a * nr + i];
        pre_row[i] = acc;
    }
    #pragma omp simd
    for (size_t j = 0; j < nc; j++) {
        float acc = t[0] * sc[j];
        for (size_t b = 1; b < r; b++)
            acc += t[b] * sc[b * nc + j];
        pre_col[j] = acc;
    }
}

/* PKM grid: g[a][b] = S_row[i_a] + S_col[j_b]. */
COMBINE_INLINE void grid_sum(const scratch *x, const float *sr, const float *sc, size_t kp)
{
    float *col_val = x->col_sel;         /* the k' column scores, gathered once */
    for (size_t b = 0; b < kp; b++)
        col_val[b] = sc[x->top_col[b]];
    for (size_t a = 0; a < kp; a++) {
        float vr = sr[x->top_row[a]];
        float *g = x->grid + a * kp;
        #pragma omp simd
        for (size_t b = 0; b < kp; b++)
            g[b] = vr + col_val[b];
    }
}

/* Tucker grid with the summed core:
 * p_row[a'][b] = sum_a S_row[a, i_a'] C[a, b];  col_sel[b][b'] = S_col[b, j_b'];
 * g[a'][b'] = sum_b p_row[a'][b] col_sel[b][b']. */
COMBINE_INLINE void grid_tucker(const scratch *x, const float *sr, const float *sc,
                                const float *csum, size_t r, size_t nr, size_t nc, size_t kp)
{
    for (size_t a2 = 0; a2 < kp; a2++)
        for (size_t b = 0; b < r; b++) {
            float acc = 0;
            for (size_t a = 0; a < r; a++)
                acc += sr[a * nr + x->top_row[a2]] * csum[a * r + b];
            x->p_row[a2 * r + b] = acc;
        }
    for (size_t b = 0; b < r; b++)
        for (size_t b2 = 0; b2 < kp; b2++)
            x->col_sel[b * kp + b2] = sc[b * nc + x->top_col[b2]];
    for (size_t a2 = 0; a2 < kp; a2++) {
        float *g = x->grid + a2 * kp;
        const float *p = x->p_row + a2 * r;
        const float *col_sel = x->col_sel;
        if (r == 2) {
            #pragma omp simd
            for (size_t b2 = 0; b2 < kp; b2++)
                g[b2] = p[0] * col_sel[b2] + p[1] * col_sel[kp + b2];
            continue;
        }
        #pragma omp simd
        for (size_t b2 = 0; b2 < kp; b2++) {
            float acc = p[0] * col_sel[b2];
            for (size_t b = 1; b < r; b++)
                acc += p[b] * col_sel[b * kp + b2];
            g[b2] = acc;
        }
    }
}

/* pos_*[rank] = the index-order position of the preselection member of
 * that rank (the inverse of rank_*). */
COMBINE_INLINE void rank_positions(const scratch *x, size_t kp)
{
    for (size_t q = 0; q < kp; q++) {
        x->pos_row[x->rank_row[q]] = (uint32_t)q;
        x->pos_col[x->rank_col[q]] = (uint32_t)q;
    }
}

/* A lower bound of the k-th best grid score for us_topk_hint: the k-th
 * best of the pairs whose preselection ranks (a, b) have (a+1)(b+1) <= k.
 * For PKM the k best pairs are among them (a pair is beaten or tied by the
 * (a+1)(b+1) pairs ranked no lower on both sides), so the bound is the k-th
 * best itself and the filter keeps about k grid scores instead of its group
 * bound's ~2-3k; for Tucker the rank-1 preselection order makes it close.
 * Any k grid scores give a valid bound: the result never depends on it. */
COMBINE_INLINE float dominance_bound(const scratch *x, const uint16_t *dom_len, size_t kp,
                                     size_t k)
{
    rank_positions(x, kp);
    size_t m = 0;
    for (size_t a = 0; a < kp; a++) {
        size_t nb = dom_len[a];
        const float *g = x->grid + (size_t)x->pos_row[a] * kp;
        for (size_t b = 0; b < nb; b++)
            x->dom[m++] = g[x->pos_col[b]];
    }
    return us_topk_bound(x->dom, m, k);
}

/* dominance_bound for PKM without the grid: the pairs' scores are the same
 * sums (same operands) from the two sides' scores in rank order, a
 * vectorisable row per rank instead of two-level gathers from the grid.
 * pre_row / pre_col are free scratch in this mode. */
COMBINE_INLINE float dominance_bound_sum(const scratch *x, const uint16_t *dom_len,
                                         const float *sr, const float *sc, size_t kp, size_t k)
{
    float *rs = x->pre_row, *cs = x->pre_col;
    rank_positions(x, kp);
    for (size_t q = 0; q < kp; q++) {
        rs[x->rank_row[q]] = sr[x->top_row[q]];
        cs[x->rank_col[q]] = sc[x->top_col[q]];
    }
    size_t m = 0;
    for (size_t a = 0; a < kp; a++) {
        size_t nb = dom_len[a];
        float vr = rs[a];
        float *d = x->dom + m;
        #pragma omp simd
        for (size_t b = 0; b < nb; b++)
            d[b] = vr + cs[b];
        m += nb;
    }
    return us_topk_bound(x->dom, m, k);
}

/* PKM's final top-k without the grid: the pairs scoring >= the dominance
 * bound t, row by row in rank order (pre_row / pre_col hold the two sides'
 * scores in rank order, see dominance_bound_sum), then ranked by score.
 * A row's pairs >= t are a prefix of its columns (rounded sums keep the
 * order; a NaN sum is never >= t, and past one in a row every sum is NaN
 * or -Inf), and the rows end at the first whose best pair is below t. These
 * are exactly the grid scores >= t (the same sums), i.e. the candidates the
 * grid path ranks, without writing the k'^2 grid and scanning it again.
 * Ties are ordered by grid position there: with a tie among the pairs
 * (their score ranks then do not sum to 0 + .. + c-1), with t not a number,
 * or with more than 4k pairs this returns 0 and the grid path runs.
 * Returns: 1 with fin_idx / fin_val filled, else 0. */
COMBINE_INLINE int pkm_final(const scratch *x, size_t kp, size_t k, float t)
{
    const float *rs = x->pre_row, *cs = x->pre_col;
    float *val = x->pair_val;
    uint32_t *pos = x->pair_pos;
    size_t c = 0;
    if (!(t > -INFINITY))
        return 0;
    for (size_t a = 0; a < kp && rs[a] + cs[0] >= t; a++) {
        float vr = rs[a];
        uint32_t row = x->pos_row[a] * (uint32_t)kp;
        size_t kept = 0;
        #pragma omp simd reduction(+ : kept)
        for (size_t b = 0; b < kp; b++)
            kept += vr + cs[b] >= t;
        #pragma omp simd
        for (size_t b = 0; b < kp; b++) {   /* the whole row: no branch on kept */
            val[c + b] = vr + cs[b];
            pos[c + b] = row + x->pos_col[b];
        }
        c += kept;
        if (c > 4 * k)
            return 0;
    }
    return us_topk_distinct(x->fin_idx, x->fin_val, val, pos, c, k);
}

/* pos / kp for grid positions (pos < kp^2 <= 2^16) by the rounded-up
 * reciprocal inv = ceil(2^32 / kp): exact there, the error term pos *
 * (inv * kp - 2^32) < 2^16 * kp < 2^32. A division per winner took a
 * quarter of the combination's own time (perf). */
static inline uint32_t grid_row(uint32_t pos, uint64_t inv)
{
    return (uint32_t)(((uint64_t)pos * inv) >> 32);
}

/* The k winners' row ids and, per core, their scores (one core: the grid
 * values; several: each core's exact score), softmaxed if asked. */
COMBINE_INLINE void write_outputs(const ctx *c, const scratch *x, const float *sr,
                                  const float *sc, int tok, int h)
{
    const us_pk_shape *s = c->s;
    size_t T = (size_t)s->n_tokens, H = (size_t)s->n_heads, r = (size_t)s->rank;
    size_t nr = (size_t)s->n_rows, nc = (size_t)s->n_cols, kp = (size_t)s->k_pre;
    size_t k = (size_t)s->k, m = (size_t)s->n_cores;
    size_t th = (size_t)tok * H + (size_t)h;
    uint64_t *oi = c->out_idx + th * k;
    uint64_t inv = ((1ull << 32) + kp - 1) / kp;
    for (size_t q = 0; q < k; q++) {    /* fin_idx -> (row, col) of the winners */
        uint32_t a = grid_row(x->fin_idx[q], inv);
        x->fin_row[q] = x->top_row[a];
        x->fin_col[q] = x->top_col[x->fin_idx[q] - a * (uint32_t)kp];
        oi[q] = (uint64_t)x->fin_row[q] * nc + x->fin_col[q];
    }
    for (size_t core = 0; core < m; core++) {
        float *os = c->out_scores + core * T * H * k + th * k;
        if (m == 1) {
            memcpy(os, x->fin_val, k * sizeof *os);
        } else {
            const float *cc = c->core + ((size_t)h * m + core) * r * r;
            for (size_t q = 0; q < k; q++) {
                uint32_t i = x->fin_row[q], j = x->fin_col[q];
                float acc = 0;
                for (size_t a = 0; a < r; a++) {
                    float inner = 0;
                    for (size_t b = 0; b < r; b++)
                        inner += cc[a * r + b] * sc[b * nc + j];
                    acc += sr[a * nr + i] * inner;
                }
                os[q] = acc;
            }
        }
        if (s->activation == US_PK_ACT_SOFTMAX)
            softmax_inplace(os, k);
    }
}

/* Cloned for AVX2 (ifunc dispatch at load time): the preselection and grid
 * loops vectorise 8 wide. -std=c11 keeps -ffp-contract=off, so both clones
 * round identically. */
__attribute__((target_clones("avx2", "default")))
static int combine(const ctx *c, int tok, int h, const scratch *x)
{
    const us_pk_shape *s = c->s;
    size_t r = (size_t)s->rank;
    size_t nr = (size_t)s->n_rows, nc = (size_t)s->n_cols, kp = (size_t)s->k_pre;
    size_t slot = (size_t)(h - c->first_head) * (size_t)s->n_tokens + (size_t)tok;
    const float *sr = c->s_row + slot * r * nr;  /* S_row[a][i] */
    const float *sc = c->s_col + slot * r * nc;
    const float *csum = c->heads + (size_t)h * c->head_stride;
    const float *u = csum + r * r, *t = u + r;
    int rc;

    const float *pre_r = sr, *pre_c = sc;
    if (s->mode == US_PK_TUCKER) {
        tucker_preselect(x->pre_row, x->pre_col, sr, sc, u, t, r, nr, nc);
        pre_r = x->pre_row;
        pre_c = x->pre_col;
    }
    /* the sets come in index order, which makes grid position order equal
     * row-id order (ties) */
    if ((rc = c->topk_set(x->top_row, x->rank_row, pre_r, nr, kp, NULL)) != US_OK ||
        (rc = c->topk_set(x->top_col, x->rank_col, pre_c, nc, kp, NULL)) != US_OK)
        return rc;

    if (s->mode == US_PK_TUCKER)         /* PKM's grid only if pkm_final declines */
        grid_tucker(x, sr, sc, csum, r, nr, nc, kp);
    float bound = s->mode == US_PK_SUM
                      ? dominance_bound_sum(x, c->dom_len, sr, sc, kp, (size_t)s->k)
                      : dominance_bound(x, c->dom_len, kp, (size_t)s->k);
    if (!(s->mode == US_PK_SUM && c->pkm_pairs && pkm_final(x, kp, (size_t)s->k, bound))) {
        if (s->mode == US_PK_SUM)
            grid_sum(x, sr, sc, kp);
        if ((rc = c->topk_hint(x->fin_idx, x->fin_val, x->grid, kp * kp, (size_t)s->k, bound,
                               NULL)) != US_OK)
            return rc;
    }
    write_outputs(c, x, sr, sc, tok, h);
    return US_OK;
}

/* Per head: csum = sum_c C_c (or [[1]] for SUM), then its rank-1 factors. */
static void prepare_heads(float *heads, size_t head_stride, const us_pk_shape *s,
                          const float *core)
{
    size_t r = (size_t)s->rank, m = (size_t)s->n_cores;
    for (int h = 0; h < s->n_heads; h++) {
        float *csum = heads + (size_t)h * head_stride;
        if (s->mode == US_PK_SUM) {     /* r = 1: core, u and t are all 1 */
            csum[0] = csum[1] = csum[2] = 1.0f;
            continue;
        }
        for (size_t i = 0; i < r * r; i++) {
            float acc = 0;
            for (size_t c = 0; c < m; c++)
                acc += core[((size_t)h * m + c) * r * r + i];
            csum[i] = acc;
        }
        us_pk_rank1(csum + r * r, csum + r * r + r, csum, (int)r);
    }
}

static int check_args(const uint64_t *out_idx, const float *out_scores, const float *q,
                      const float *k_row, const float *k_col, const float *core,
                      const us_pk_shape *s, us_err *err)
{
    int rc = us_pk_shape_check(s, err);
    if (rc != US_OK)
        return rc;
    if (!out_idx || !out_scores || !q || !k_row || !k_col)
        return us_err_set(err, US_EINVAL, "pk score: NULL output, query or keys");
    if (s->mode == US_PK_TUCKER && core == NULL)
        return us_err_set(err, US_EINVAL, "pk score: Tucker mode needs a core");
    return US_OK;
}

/* Head h's score matrices: S_row = Q_row K_row^T and S_col = Q_col K_col^T
 * for all T tokens, one sgemm per side (Q read in place, leading dimension
 * 2 H d). */
static void head_sgemms(const us_pk_shape *s, int h, const float *q, const float *k_row,
                        const float *k_col, float *s_row, float *s_col)
{
    int T = s->n_tokens, H = s->n_heads, d = s->d_key, r = s->rank;
    const float *qh = q + (size_t)h * 2 * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r * s->n_rows, d, 1.0f, qh,
                2 * H * d, k_row + (size_t)h * r * s->n_rows * d, d, 0.0f, s_row,
                r * s->n_rows);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r * s->n_cols, d, 1.0f,
                qh + d, 2 * H * d, k_col + (size_t)h * r * s->n_cols * d, d, 0.0f, s_col,
                r * s->n_cols);
}

/* A unit (see make_layout): head h's two sgemms into this thread's
 * matrices, then its combination while the scores are still in this core's
 * cache (a pass over all heads reads them back from memory: the 2-thread
 * combination cost twice the 1-thread one per token). */
static void run_unit(ctx *c, int h, float *s_row, float *s_col, const float *q,
                     const float *k_row, const float *k_col, const scratch *x)
{
    head_sgemms(c->s, h, q, k_row, k_col, s_row, s_col);
    c->s_row = s_row;
    c->s_col = s_col;
    c->first_head = h;
    for (int tok = 0; tok < c->s->n_tokens; tok++)   /* us_topk cannot fail here */
        combine(c, tok, h, x);
}

static void run_units(const ctx *c0, const layout *L, uint8_t *base, uint8_t *threads,
                      const float *q, const float *k_row, const float *k_col)
{
    const us_pk_shape *s = c0->s;
    size_t per_thread = L->s_row_bytes + L->s_col_bytes;
    #pragma omp parallel num_threads(L->n_threads) if (L->n_threads > 1)
    {
        int me = omp_get_thread_num();
        ctx c = *c0;
        scratch x = carve_scratch(threads + (size_t)me * L->thread_bytes, s);
        float *s_row = (float *)(void *)(base + (size_t)me * per_thread);
        float *s_col = (float *)(void *)(base + (size_t)me * per_thread + L->s_row_bytes);
        #pragma omp for schedule(static)
        for (int h = 0; h < s->n_heads; h++)
            run_unit(&c, h, s_row, s_col, q, k_row, k_col, &x);
    }
}

/* OpenBLAS's pthread build with several threads: one pass over all heads
 * (its sgemms threaded by OpenBLAS), then the combination on our team, so
 * the two thread pools do not alternate (each spins after its work and
 * slows the other: per-head passes ran at 0.39-0.62 of bare sgemm). */
static void run_passes(const ctx *c0, const layout *L, float *s_row, float *s_col,
                       uint8_t *threads, const float *q, const float *k_row,
                       const float *k_col)
{
    const us_pk_shape *s = c0->s;
    int T = s->n_tokens, H = s->n_heads, r = s->rank;
    ctx c = *c0;
    c.s_row = s_row;
    c.s_col = s_col;
    for (int h = 0; h < H; h++)
        head_sgemms(s, h, q, k_row, k_col, s_row + (size_t)h * T * r * s->n_rows,
                    s_col + (size_t)h * T * r * s->n_cols);
    long items = (long)T * H;
    #pragma omp parallel num_threads(L->n_threads)
    {
        scratch x = carve_scratch(threads + (size_t)omp_get_thread_num() * L->thread_bytes, s);
        /* dynamic: this build's worker spins after the sgemm and shares a
         * core with one of ours on a 2-core box; static halves made the
         * whole team wait for that one (2-thread T = 32 ratio 0.47-0.90
         * over runs; dynamic 0.86-0.87) */
        #pragma omp for schedule(dynamic, 8)
        for (long it = 0; it < items; it++)   /* us_topk cannot fail here */
            combine(&c, (int)(it / H), (int)(it % H), &x);
    }
}

static _Atomic int allow_pairs = 1;

void us_pk_allow_pairs(int on)
{
    atomic_store_explicit(&allow_pairs, on, memory_order_relaxed);
}

int us_pk_score(uint64_t *out_idx, float *out_scores, const float *q,
                const float *k_row, const float *k_col, const float *core,
                const us_pk_shape *s, void *workspace, size_t workspace_bytes,
                int n_threads, us_err *err)
{
    int rc = check_args(out_idx, out_scores, q, k_row, k_col, core, s, err);
    if (rc != US_OK)
        return rc;
    layout L = make_layout(s, n_threads);
    if (workspace == NULL || workspace_bytes < L.total)
        return us_err_set(err, US_EINVAL, "pk score: workspace of %zu bytes, need %zu "
                          "(us_pk_workspace_bytes)", workspace ? workspace_bytes : 0, L.total);
    uint8_t *base = (uint8_t *)(((uintptr_t)workspace + ALIGN_BYTES - 1) &
                                ~(uintptr_t)(ALIGN_BYTES - 1));
    float *heads = (float *)(void *)(base + L.matrix_bytes);
    uint8_t *threads = base + L.matrix_bytes + (size_t)s->n_heads * L.head_bytes;
    size_t head_stride = L.head_bytes / sizeof(float);
    prepare_heads(heads, head_stride, s, core);
    ctx c = { s, NULL, NULL, 0, core, heads, head_stride, out_idx,
              out_scores, us_topk_set, us_topk_hint,
              atomic_load_explicit(&allow_pairs, memory_order_relaxed), { 0 } };
    dominance_pairs(c.dom_len, (size_t)s->k_pre, (size_t)s->k);
    if (L.units)
        run_units(&c, &L, base, threads, q, k_row, k_col);
    else
        run_passes(&c, &L, (float *)(void *)base, (float *)(void *)(base + L.s_row_bytes),
                   threads, q, k_row, k_col);
    return US_OK;
}

int us_pk_score_ref(uint64_t *out_idx, float *out_scores, const float *q,
                    const float *k_row, const float *k_col, const float *core,
                    const us_pk_shape *s, us_err *err)
{
    int rc = check_args(out_idx, out_scores, q, k_row, k_col, core, s, err);
    if (rc != US_OK)
        return rc;
    layout L = make_layout(s, 1);
    uint8_t *mem = malloc(L.total);
    if (mem == NULL)
        return us_err_set(err, US_ENOMEM, "pk score reference: %zu bytes", L.total);
    uint8_t *base = (uint8_t *)(((uintptr_t)mem + ALIGN_BYTES - 1) & ~(uintptr_t)(ALIGN_BYTES - 1));
    float *s_row = (float *)(void *)base;
    float *s_col = (float *)(void *)(base + L.s_row_bytes);
    float *heads = (float *)(void *)(base + L.s_row_bytes + L.s_col_bytes);
    uint8_t *thread0 = base + L.s_row_bytes + L.s_col_bytes + (size_t)s->n_heads * L.head_bytes;

    size_t T = (size_t)s->n_tokens, H = (size_t)s->n_heads, d = (size_t)s->d_key;
    size_t r = (size_t)s->rank;
    size_t head_stride = L.head_bytes / sizeof(float);
    prepare_heads(heads, head_stride, s, core);
    ctx c = { s, s_row, s_col, 0, core, heads, head_stride, out_idx,
              out_scores, us_topk_set_ref, topk_hint_ref, 0, { 0 } };
    dominance_pairs(c.dom_len, (size_t)s->k_pre, (size_t)s->k);
    scratch x = carve_scratch(thread0, s);
    for (size_t h = 0; h < H && rc == US_OK; h++) {
        for (size_t t = 0; t < T; t++)
            for (int side = 0; side < 2; side++) {
                size_t n = side ? (size_t)s->n_cols : (size_t)s->n_rows;
                const float *keys = (side ? k_col : k_row) + h * r * n * d;
                const float *qv = q + ((t * H + h) * 2 + (size_t)side) * d;
                float *out = (side ? s_col : s_row) + t * r * n;
                for (size_t e = 0; e < r * n; e++) {
                    float acc = 0;
                    for (size_t c = 0; c < d; c++)
                        acc += qv[c] * keys[e * d + c];
                    out[e] = acc;
                }
            }
        c.first_head = (int)h;          /* the matrices hold one head */
        for (size_t t = 0; t < T && rc == US_OK; t++)
            rc = combine(&c, (int)t, (int)h, &x);
    }
    free(mem);
    if (rc != US_OK)
        return us_err_set(err, rc, "pk score reference: top-k failed (out of memory)");
    return US_OK;
}
