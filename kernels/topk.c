/*
 * topk.c — top-k by insertion into a sorted array (see topk.h for the order).
 *
 * The current best k are kept sorted, best first; the last one is the
 * threshold. Elements are scanned in increasing index order, so a newcomer
 * never beats an element of equal score (it has the higher index), and its
 * place is found by shifting worse entries down from the end: a predictable
 * loop, unlike a heap's sift-down whose branches are coin flips (measured:
 * a heap version spent most of its time there, 44 ns/element at n = 1024,
 * k = 32).
 *
 * With AVX2 (run-time dispatch) a filter runs first (filter_avx2): a
 * lower bound of the k-th best from block maxima, one vector pass keeping
 * only the scores above it, typically 1-1.5 k candidates. Without AVX2, or
 * when the bound is useless, the plain scan offers every element (the
 * AVX2 scan still skips blocks of eight below the threshold). Worst case
 * (ascending input) is O(n*k).
 */
#include "kernels/topk.h"

#include <stdatomic.h>
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

/* Order-preserving map of a float (not NaN) to an unsigned key:
 * a < b <=> key(a) < key(b); -0.0 maps just below +0.0. */
static inline uint32_t order_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float key_value(uint32_t key)
{
    uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A lower bound of the k-th largest key of keys[0..n) (n a multiple of 8,
 * 1 <= k <= n): the largest K whose low KEY_FREE_BITS bits are zero with
 * #{key >= K} >= k, by binary search between lo and hi, where at least k
 * keys are >= lo and none is above hi (e.g. the smallest and the largest;
 * padding below lo never reaches a trial, which is never 0). Each round is
 * n/8 vector compares with no data-dependent branches (a quickselect here
 * spent most of its time on mispredictions). The low bits are left at zero:
 * the bound is then within 2^-8 relative of exact, which costs about one
 * extra candidate at n = 1024; a search between the keys' bounds instead of
 * bit by bit from the top takes ~9 rounds on sgemm score rows instead of 14
 * (maxima in [1.6, 5] share no exponent bits: 2 is 0x40000000, 1.99 is
 * 0x3fff...). */
#define KEY_FREE_BITS 15

/* The search's range in steps of 2^KEY_FREE_BITS: the answer is in
 * [*a, *b]. Returns: nothing; cannot fail. */
static inline void search_range(uint32_t lo, uint32_t hi, uint32_t *a, uint32_t *b)
{
    *a = lo >> KEY_FREE_BITS;            /* lo with the free bits cleared: >= k keys reach it */
    *b = hi >> KEY_FREE_BITS;
}

AVX2_TARGET static uint32_t kth_largest_key(const uint32_t *keys, size_t n, size_t k,
                                            uint32_t lo, uint32_t hi)
{
    const __m256i flip = _mm256_set1_epi32((int)0x80000000u);
    uint32_t a, b;
    search_range(lo, hi, &a, &b);
    while (a < b) {
        uint32_t mid = a + (b - a + 1) / 2, trial = mid << KEY_FREE_BITS;
        /* signed compare on flipped values == unsigned compare */
        __m256i t = _mm256_xor_si256(_mm256_set1_epi32((int)(trial - 1)), flip);
        __m256i count = _mm256_setzero_si256();
        for (size_t i = 0; i < n; i += 8) {
            __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(keys + i)),
                                         flip);
            count = _mm256_sub_epi32(count, _mm256_cmpgt_epi32(x, t));   /* key > trial-1 */
        }
        __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(count),
                                   _mm256_extracti128_si256(count, 1));
        c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4e));
        c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xb1));
        int reached = (size_t)_mm_cvtsi128_si32(c4) >= k;
        a = reached ? mid : a;
        b = reached ? b : mid - 1;
    }
    return a << KEY_FREE_BITS;
}

/* The smallest and largest of 8 unsigned lanes. */
AVX2_TARGET static inline void lanes_min_max(__m256i lo, __m256i hi, uint32_t *lo_out,
                                             uint32_t *hi_out)
{
    uint32_t l[8], h[8];
    _mm256_storeu_si256((__m256i *)(void *)l, lo);
    _mm256_storeu_si256((__m256i *)(void *)h, hi);
    for (int j = 1; j < 8; j++) {
        l[0] = l[j] < l[0] ? l[j] : l[0];
        h[0] = h[j] > h[0] ? h[j] : h[0];
    }
    *lo_out = l[0];
    *hi_out = h[0];
}

/* order_key on 8 lanes: negative floats flip every bit, others the sign. */
AVX2_TARGET static inline __m256i order_key_256(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    return _mm256_xor_si256(u, _mm256_or_si256(_mm256_srai_epi32(u, 31),
                                               _mm256_set1_epi32((int)0x80000000u)));
}

/*
 * Filter then select. Split the scores into nb >= k groups (up to 4k groups
 * of at least 8) and take the largest number of each group: these are nb
 * distinct elements, so at least k numbers are >= t0 = the k-th largest
 * group maximum, i.e. t0 is a lower bound of the k-th best score. Only
 * scores >= t0 can be in the result; they are offered in index order, which
 * gives exactly the result of the full scan (ties and all). With 4k groups
 * typically 1.5k candidates remain (k groups: ~3.5k), so the cost is two
 * vector passes plus a few insertions. Returns 0 (caller falls back to the
 * full scan) when the bound is useless (t0 = -Inf, e.g. groups full of NaN).
 */
#define CAND_CAP (4 * US_TOPK_MAX_K + 64)

/* Groups of at least 8 scores, for both filters. The AVX-512 one had
 * groups of at least 16: at n = 606, k = 32 (UltraMem's preselection) that
 * left k groups, a bound that let ~3.5k candidates into the quadratic
 * ranking, 1.70 us a call against 0.75 us with 8 (n = 1024: 1.00 -> 0.84;
 * groups of 4: 0.72 / 0.83, but AVX2 slower at 606 than with 8). Any group
 * count gives the same result (see above). */
#define MIN_GROUP_ROWS 8

/* The bound t0 over nb groups (nb a multiple of 8, k <= nb <= 4k). Group g =
 * the scores at g, g + nb, g + 2 nb, ... (any nb disjoint groups give the
 * bound), so the maxima are vertical vector maxes over rows of nb scores,
 * with no horizontal reduction per group. */
AVX2_TARGET static inline float group_bound(const float *scores, size_t n, size_t nb, size_t k)
{
    size_t rows = n / nb;
    uint32_t maxima[4 * US_TOPK_MAX_K], key_lo, key_hi;
    __m256i lo = _mm256_set1_epi32(-1), hi = _mm256_setzero_si256();
    for (size_t v = 0; v < nb / 8; v++) {
        __m256 mx = _mm256_set1_ps(-__builtin_inff());
        for (size_t r = 0; r < rows; r++)    /* max(x, mx) is mx where x is NaN */
            mx = _mm256_max_ps(_mm256_loadu_ps(scores + r * nb + 8 * v), mx);
        __m256i key = order_key_256(mx);
        _mm256_storeu_si256((__m256i *)(void *)(maxima + 8 * v), key);
        lo = _mm256_min_epu32(lo, key);
        hi = _mm256_max_epu32(hi, key);
    }
    lanes_min_max(lo, hi, &key_lo, &key_hi);
    /* -0.0 and +0.0 have different keys but compare equal: the filter
     * uses >= on floats, so a -0.0 bound also admits +0.0 (harmless) */
    return key_value(kth_largest_key(maxima, nb, k, key_lo, key_hi));
}

/* The scalar tail both vector collectors share: scores[i..n) >= t0 appended
 * after the c candidates found so far. Returns: the new count, or 0 when
 * more than cap would be needed. */
static inline size_t collect_tail(float *cand_val, uint32_t *cand_idx, const float *scores,
                                  size_t i, size_t n, float t0, size_t c, size_t cap)
{
    for (; i < n; i++)
        if (scores[i] >= t0) {
            if (c + 1 > cap)
                return 0;
            cand_val[c] = scores[i];
            cand_idx[c++] = (uint32_t)i;
        }
    return c;
}

/* Left-packing without AVX-512's compress: for each 8-bit compare mask, the
 * lanes to keep as byte indices (lane order), e.g. 0b1010 -> 1, 3. */
static uint64_t pack_lanes[256];

__attribute__((constructor)) static void build_pack_lanes(void)
{
    for (unsigned m = 0; m < 256; m++) {
        uint64_t v = 0;
        unsigned out = 0;
        for (unsigned l = 0; l < 8; l++)
            if (m & (1u << l))
                v |= (uint64_t)l << (8 * out++);
        pack_lanes[m] = v;
    }
}

/* The scores >= t0 in index order into cand_* (room for 8 entries past
 * cap). No branch on the compare mask: the kept lanes are packed with a
 * permute from pack_lanes (a "skip empty vectors" branch mispredicted on
 * random candidates, as in the AVX-512 collector). Returns: how many, or 0
 * when more than cap would be needed (the bound was weak). */
AVX2_TARGET static inline size_t collect_candidates(float *cand_val, uint32_t *cand_idx,
                                                    const float *scores, size_t n, float t0,
                                                    size_t cap)
{
    size_t c = 0, i = 0;
    const __m256 tv = _mm256_set1_ps(t0);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(scores + i);
        unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, tv, _CMP_GE_OQ));
        __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)pack_lanes[mask]));
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)i), lane);
        _mm256_storeu_ps(cand_val + c, _mm256_permutevar8x32_ps(x, perm));
        _mm256_storeu_si256((__m256i *)(void *)(cand_idx + c),
                            _mm256_permutevar8x32_epi32(idx, perm));
        c += (size_t)__builtin_popcount(mask);
        if (c > cap)                     /* rare: the bound was weak */
            return 0;
    }
    return collect_tail(cand_val, cand_idx, scores, i, n, t0, c, cap);
}

/* The filters' output: the scores >= a bound, in index order, with the
 * rank each would have in the best-first result. Each array has room for
 * 16 padding entries after cap. */
typedef struct cands {
    float    val[CAND_CAP + 16];
    uint32_t idx[CAND_CAP + 16];
    uint32_t rank[CAND_CAP + 16];
    size_t   c;
} cands;

/* Rank of each candidate = how many candidates come before it (higher
 * score, or equal score and lower index = earlier position); the ranks are
 * distinct, so rank < k selects. First by score alone, 8 candidates at a
 * time against each candidate's score broadcast (a compare and a masked
 * increment per pair of vectors: counting one candidate at a time with
 * movemask and popcount took 2x the instructions). Without ties those ranks
 * are 0..c-1, which their sum shows (a tie gives both the lower rank, so the
 * sum falls short); only then the count again with positions. Candidates
 * are numbers, never NaN: the collectors keep scores >= a number. */
AVX2_TARGET static inline size_t rank_by_score(cands *cd)
{
    size_t c = cd->c;
    for (size_t p = c; p < c + 8; p++)
        cd->val[p] = __builtin_nanf("");        /* padding never compares true */
    __m256i total = _mm256_setzero_si256();
    for (size_t a = 0; a < c; a += 8) {
        __m256 va = _mm256_loadu_ps(cd->val + a);
        __m256i rank = _mm256_setzero_si256();
        for (size_t b = 0; b < c; b++)   /* - (-1) where val[b] > val[a + lane] */
            rank = _mm256_sub_epi32(rank, _mm256_castps_si256(
                _mm256_cmp_ps(_mm256_set1_ps(cd->val[b]), va, _CMP_GT_OQ)));
        _mm256_storeu_si256((__m256i *)(void *)(cd->rank + a), rank);
        total = _mm256_add_epi32(total, rank);
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)(void *)lanes, total);
    size_t sum = 0;
    for (int l = 0; l < 8; l++)
        sum += lanes[l];
    return sum;
}

AVX2_TARGET static inline void rank_candidates(cands *cd)
{
    size_t c = cd->c;
    if (rank_by_score(cd) == c * (c - 1) / 2)
        return;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (size_t a = 0; a < c; a++) {
        __m256 va = _mm256_set1_ps(cd->val[a]);
        __m256i pa = _mm256_set1_epi32((int)a);
        unsigned rank = 0;
        for (size_t b = 0; b < c; b += 8) {
            __m256 vb = _mm256_loadu_ps(cd->val + b);
            __m256 earlier = _mm256_castsi256_ps(
                _mm256_cmpgt_epi32(pa, _mm256_add_epi32(_mm256_set1_epi32((int)b), lane)));
            __m256 before = _mm256_or_ps(_mm256_cmp_ps(vb, va, _CMP_GT_OQ),
                                         _mm256_and_ps(_mm256_cmp_ps(vb, va, _CMP_EQ_OQ),
                                                       earlier));
            rank += (unsigned)__builtin_popcount((unsigned)_mm256_movemask_ps(before));
        }
        cd->rank[a] = rank;
    }
}

/* How many groups the bound of the filters uses (see below): up to 4k of
 * at least MIN_GROUP_ROWS scores, a multiple of `width`; 0 if fewer than k. */
static size_t filter_groups(size_t n, size_t k, size_t width)
{
    size_t nb = 4 * k;
    if (n / MIN_GROUP_ROWS < nb)
        nb = n / MIN_GROUP_ROWS;
    nb = nb / width * width;             /* whole vectors for kth_largest_key */
    return nb < k ? 0 : nb;
}

/*
 * Filter then rank. Split the scores into nb >= k groups (up to 4k groups
 * of at least 8) and take the largest number of each group: these are nb
 * distinct elements, so at least k numbers are >= t0 = the k-th largest
 * group maximum, i.e. t0 is a lower bound of the k-th best score (a caller
 * may pass its own: `hint`, used when it is a number > -Inf). Only scores
 * >= t0 can be in the result; they are collected in index order and ranked,
 * which gives exactly the result of the full scan (ties and all). With 4k
 * groups typically 1.5k candidates remain (k groups: ~3.5k), so the cost is
 * two vector passes plus the ranking. Returns 0 (caller falls back) when the
 * bound is useless (t0 = -Inf, e.g. groups full of NaN) or too weak (too
 * many candidates), else 1.
 */
AVX2_TARGET static int filter_avx2(cands *cd, const float *scores, size_t n, size_t k,
                                   float hint)
{
    float t0 = hint;
    if (!(t0 > -__builtin_inff())) {
        size_t nb = filter_groups(n, k, 8);
        if (nb == 0)
            return 0;
        t0 = group_bound(scores, n, nb, k);
        if (!(t0 > -__builtin_inff()))   /* -Inf, or NaN from a truncated key */
            return 0;
    }
    size_t cap = 4 * k + 64 < CAND_CAP ? 4 * k + 64 : CAND_CAP;
    cd->c = collect_candidates(cd->val, cd->idx, scores, n, t0, cap);
    /* c >= k: at least k scores are >= t0, so the k-th best is >= t0 and
     * every result element (ties included) is a candidate: exact for ANY
     * t0. c < k cannot happen with the group bound; a caller's hint may be
     * too high, and c = 0 means too many: then the caller's fallback is
     * still exact. Correctness never rests on the bound. */
    if (cd->c < k)
        return 0;
    rank_candidates(cd);
    return 1;
}

/* ---- the same filter 16 wide (AVX-512F+BW) -----------------------------
 * Same bound, same candidates, same ranks as the AVX2 filter above, with
 * mask registers instead of movemask: the candidates are packed with a
 * register compress (the memory form is microcoded on some AMD cores) and
 * counted with popcount, so no lane loop remains. */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx2,popcnt")))

AVX512_TARGET static uint32_t kth_largest_key_512(const uint32_t *keys, size_t n, size_t k,
                                                  uint32_t lo, uint32_t hi)
{
    uint32_t a, b;
    search_range(lo, hi, &a, &b);
    while (a < b) {
        uint32_t mid = a + (b - a + 1) / 2;
        __m512i t = _mm512_set1_epi32((int)(mid << KEY_FREE_BITS));
        /* four compare masks joined into one 64-bit count: the count, not
         * the compare, is the throughput limit of a round */
        size_t count = 0, i = 0;
        for (; i + 64 <= n; i += 64) {
            __mmask16 m0 = _mm512_cmpge_epu32_mask(_mm512_loadu_si512((const void *)(keys + i)), t);
            __mmask16 m1 = _mm512_cmpge_epu32_mask(_mm512_loadu_si512((const void *)(keys + i + 16)), t);
            __mmask16 m2 = _mm512_cmpge_epu32_mask(_mm512_loadu_si512((const void *)(keys + i + 32)), t);
            __mmask16 m3 = _mm512_cmpge_epu32_mask(_mm512_loadu_si512((const void *)(keys + i + 48)), t);
            __mmask64 m = _mm512_kunpackd(_mm512_kunpackw(m3, m2), _mm512_kunpackw(m1, m0));
            count += (size_t)__builtin_popcountll(_cvtmask64_u64(m));
        }
        for (; i < n; i += 16)
            count += (size_t)__builtin_popcount(_mm512_cmpge_epu32_mask(
                _mm512_loadu_si512((const void *)(keys + i)), t));
        int reached = count >= k;
        a = reached ? mid : a;
        b = reached ? b : mid - 1;
    }
    return a << KEY_FREE_BITS;
}

/* As group_bound, nb a multiple of 16. */
AVX512_TARGET static inline float group_bound_512(const float *scores, size_t n, size_t nb,
                                                  size_t k)
{
    size_t rows = n / nb;
    uint32_t maxima[4 * US_TOPK_MAX_K];
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    /* Per lane the largest and second largest key: the smallest second is
     * <= 32 distinct maxima, so with k <= 32 it is a lower end for the
     * search as good as the smallest key and much closer to the answer (the
     * smallest of 128 group maxima is often below zero). */
    __m512i lo = _mm512_set1_epi32(-1), first = _mm512_setzero_si512(), second = first;
    for (size_t v = 0; v < nb / 16; v++) {
        __m512 mx = _mm512_set1_ps(-__builtin_inff());
        for (size_t r = 0; r < rows; r++)    /* max(x, mx) is mx where x is NaN */
            mx = _mm512_max_ps(_mm512_loadu_ps(scores + r * nb + 16 * v), mx);
        __m512i u = _mm512_castps_si512(mx);  /* order_key, 16 lanes */
        __m512i key = _mm512_xor_si512(u, _mm512_or_si512(_mm512_srai_epi32(u, 31), sign));
        _mm512_storeu_si512((void *)(maxima + 16 * v), key);
        lo = _mm512_min_epu32(lo, key);
        second = _mm512_max_epu32(second, _mm512_min_epu32(first, key));
        first = _mm512_max_epu32(first, key);
    }
    uint32_t low_end = _mm512_reduce_min_epu32(k <= 32 ? second : lo);
    return key_value(kth_largest_key_512(maxima, nb, k, low_end, _mm512_reduce_max_epu32(first)));
}

/* As collect_candidates; cand_* have room for 16 entries past cap. No
 * branch on the compare mask: the candidates land in random vectors, so a
 * "skip empty vectors" branch mispredicted on about half of them (perf: the
 * costliest line of this filter at n = 1024); a compress of no lanes stores
 * nothing useful and advances by 0. */
AVX512_TARGET static inline size_t collect_candidates_512(float *cand_val, uint32_t *cand_idx,
                                                          const float *scores, size_t n,
                                                          float t0, size_t cap)
{
    size_t c = 0, i = 0;
    const __m512 tv = _mm512_set1_ps(t0);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(scores + i);
        __mmask16 m = _mm512_cmp_ps_mask(x, tv, _CMP_GE_OQ);
        __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)i), lane);
        _mm512_storeu_ps(cand_val + c, _mm512_maskz_compress_ps(m, x));
        _mm512_storeu_si512((void *)(cand_idx + c), _mm512_maskz_compress_epi32(m, idx));
        c += (size_t)__builtin_popcount(m);
        if (c > cap)                     /* rare: the bound was weak */
            return 0;
    }
    return collect_tail(cand_val, cand_idx, scores, i, n, t0, c, cap);
}

/* As rank_candidates, 16 wide. */
AVX512_TARGET static inline size_t rank_by_score_512(cands *cd)
{
    size_t c = cd->c;
    _mm512_storeu_ps(cd->val + c, _mm512_set1_ps(__builtin_nanf("")));   /* padding */
    const __m512i minus_one = _mm512_set1_epi32(-1);
    __m512i total = _mm512_setzero_si512();
    for (size_t a = 0; a < c; a += 16) {
        __m512 va = _mm512_loadu_ps(cd->val + a);
        __m512i rank = _mm512_setzero_si512();
        for (size_t b = 0; b < c; b++)
            rank = _mm512_mask_sub_epi32(rank, _mm512_cmp_ps_mask(_mm512_set1_ps(cd->val[b]), va,
                                                                  _CMP_GT_OQ), rank, minus_one);
        _mm512_storeu_si512((void *)(cd->rank + a), rank);
        total = _mm512_add_epi32(total, rank);
    }
    return (size_t)(uint32_t)_mm512_reduce_add_epi32(total);
}

AVX512_TARGET static inline void rank_candidates_512(cands *cd)
{
    size_t c = cd->c;
    if (rank_by_score_512(cd) == c * (c - 1) / 2)
        return;
    for (size_t a = 0; a < c; a++) {
        __m512 va = _mm512_set1_ps(cd->val[a]);
        unsigned rank = 0;
        for (size_t b = 0; b < c; b += 16) {
            __m512 vb = _mm512_loadu_ps(cd->val + b);
            /* positions b + l < a come earlier: they win ties */
            size_t ahead = a > b ? (a - b < 16 ? a - b : 16) : 0;
            unsigned earlier = (unsigned)((1ull << ahead) - 1);
            unsigned before = (unsigned)_mm512_cmp_ps_mask(vb, va, _CMP_GT_OQ) |
                              ((unsigned)_mm512_cmp_ps_mask(vb, va, _CMP_EQ_OQ) & earlier);
            rank += (unsigned)__builtin_popcount(before);
        }
        cd->rank[a] = rank;
    }
}

/* As filter_avx2 with 16-wide vectors (nb a multiple of 16). */
AVX512_TARGET static int filter_avx512(cands *cd, const float *scores, size_t n, size_t k,
                                       float hint)
{
    float t0 = hint;
    if (!(t0 > -__builtin_inff())) {
        size_t nb = filter_groups(n, k, 16);
        if (nb == 0)
            return 0;
        t0 = group_bound_512(scores, n, nb, k);
        if (!(t0 > -__builtin_inff()))
            return 0;
    }
    size_t cap = 4 * k + 64 < CAND_CAP ? 4 * k + 64 : CAND_CAP;
    cd->c = collect_candidates_512(cd->val, cd->idx, scores, n, t0, cap);
    if (cd->c < k)                       /* see filter_avx2 */
        return 0;
    rank_candidates_512(cd);
    return 1;
}

/* 0 portable, 1 AVX2, 2 AVX-512F+BW (the k-th search joins 64-bit masks):
 * the widest the CPU has, lowered by us_topk_limit_isa (tests). */
static _Atomic int isa_limit = 2;

void us_topk_limit_isa(int level)
{
    atomic_store_explicit(&isa_limit, level, memory_order_relaxed);
}

static int isa_level(void)
{
    int level = __builtin_cpu_supports("avx2") ? 1 : 0;
    if (level && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        level = 2;
    int limit = atomic_load_explicit(&isa_limit, memory_order_relaxed);
    return level < limit ? level : limit;
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

/* "No caller bound" for the hint arguments below: the filters then compute
 * their group bound. */
#define NO_HINT (-__builtin_inff())

/* The candidates of the widest filter the level allows, with the caller's
 * bound first when it is a number > -Inf, then the group bound. Returns:
 * 1 with cd filled, 0 when the full scan must run. */
static int filter(cands *cd, const float *scores, size_t n, size_t k, int level, float hint)
{
    int hinted = hint > NO_HINT;
    if (level >= 2)
        return (hinted && filter_avx512(cd, scores, n, k, hint)) ||
               filter_avx512(cd, scores, n, k, NO_HINT);
    if (level == 1)
        return (hinted && filter_avx2(cd, scores, n, k, hint)) ||
               filter_avx2(cd, scores, n, k, NO_HINT);
    return 0;
}

/* Top-k of one row, best first; arguments already checked, 1 <= k <= n. */
static void topk_one(uint32_t *out_idx, float *out_val, const float *scores, size_t n,
                     size_t k, int level, float hint)
{
    entry top[US_TOPK_MAX_K + 1];        /* + 1: ranks >= k land in top[k] */
    cands cd;
    size_t m = 0, i = 0;
    if (filter(&cd, scores, n, k, level, hint)) {
        /* no branch on the rank: it mispredicted on a third of the candidates */
        for (size_t a = 0; a < cd.c; a++) {
            size_t slot = cd.rank[a] < k ? cd.rank[a] : k;
            top[slot].val = cd.val[a];
            top[slot].idx = cd.idx[a];
        }
        goto done;
    }
    for (; i < k; i++)
        offer(top, &m, k, scores[i], (uint32_t)i);
    if (level >= 1)
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

/* best[0..k) best first -> out_idx ascending with out_rank = the position
 * in best. Insertion sort: only the fallbacks come here. */
static void set_from_best(uint32_t *out_idx, uint32_t *out_rank, const uint32_t *best, size_t k)
{
    for (size_t q = 0; q < k; q++) {
        size_t j = q;
        for (; j > 0 && out_idx[j - 1] > best[q]; j--) {
            out_idx[j] = out_idx[j - 1];
            out_rank[j] = out_rank[j - 1];
        }
        out_idx[j] = best[q];
        out_rank[j] = (uint32_t)q;
    }
}

/* The top-k set of one row in index order; arguments checked, 1 <= k <= n.
 * The filter's candidates are in index order already: keeping those ranked
 * below k keeps that order (no sort). */
static void topk_set_one(uint32_t *out_idx, uint32_t *out_rank, const float *scores, size_t n,
                         size_t k, int level)
{
    cands cd;
    if (filter(&cd, scores, n, k, level, NO_HINT)) {
        size_t m = 0;
        for (size_t a = 0; a < cd.c; a++) {  /* compaction in place: m <= a */
            uint32_t rank = cd.rank[a];
            cd.idx[m] = cd.idx[a];
            cd.rank[m] = rank;
            m += rank < k;
        }
        memcpy(out_idx, cd.idx, k * sizeof *out_idx);
        memcpy(out_rank, cd.rank, k * sizeof *out_rank);
        return;
    }
    uint32_t best[US_TOPK_MAX_K];
    topk_one(best, NULL, scores, n, k, level, NO_HINT);
    set_from_best(out_idx, out_rank, best, k);
}

int us_topk_hint(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
                 float bound, us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0)
        return rc;
    topk_one(out_idx, out_val, scores, n, k, isa_level(), bound);
    return US_OK;
}

int us_topk(uint32_t *out_idx, float *out_val, const float *scores, size_t n, size_t k,
            us_err *err)
{
    return us_topk_hint(out_idx, out_val, scores, n, k, NO_HINT, err);
}

/* check_args, and the ranks' array of us_topk_set and its reference. */
static int check_set_args(const uint32_t *out_idx, const uint32_t *out_rank, const float *scores,
                          size_t n, size_t k, us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc == US_OK && k > 0 && out_rank == NULL)
        rc = us_err_set(err, US_EINVAL, "top-k set: NULL ranks");
    return rc;
}

int us_topk_set(uint32_t *out_idx, uint32_t *out_rank, const float *scores, size_t n, size_t k,
                us_err *err)
{
    int rc = check_set_args(out_idx, out_rank, scores, n, k, err);
    if (rc != US_OK || k == 0)
        return rc;
    topk_set_one(out_idx, out_rank, scores, n, k, isa_level());
    return US_OK;
}

int us_topk_distinct(uint32_t *out_key, float *out_val, const float *val, const uint32_t *key,
                     size_t c, size_t k)
{
    cands cd;
    int level = isa_level();
    if (k == 0 || c < k || c > CAND_CAP || !out_key || !out_val || !val || !key)
        return 0;
    memcpy(cd.val, val, c * sizeof *val);
    cd.c = c;
    size_t sum;
    if (level >= 2) {
        sum = rank_by_score_512(&cd);
    } else if (level == 1) {
        sum = rank_by_score(&cd);
    } else {
        sum = 0;
        for (size_t a = 0; a < c; a++) {
            uint32_t rank = 0;
            for (size_t b = 0; b < c; b++)
                rank += val[b] > val[a];
            cd.rank[a] = rank;
            sum += rank;
        }
    }
    if (sum != c * (c - 1) / 2 || val[0] != val[0])   /* a tie or a NaN (c = 1: the check) */
        return 0;
    for (size_t a = 0; a < c; a++)
        if (cd.rank[a] < k) {
            out_key[cd.rank[a]] = key[a];
            out_val[cd.rank[a]] = val[a];
        }
    return 1;
}

/* keys[i] = order_key(v[i]) with NaN counted as -Inf (below every number),
 * and the smallest and largest key, 8 at a time. */
AVX2_TARGET static void bound_keys(uint32_t *keys, uint32_t *lo_out, uint32_t *hi_out,
                                   const float *v, size_t n)
{
    const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
    __m256i lo = _mm256_set1_epi32(-1), hi = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(v + i);
        __m256i key = order_key_256(_mm256_blendv_ps(x, neg_inf, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
        _mm256_storeu_si256((__m256i *)(void *)(keys + i), key);
        lo = _mm256_min_epu32(lo, key);
        hi = _mm256_max_epu32(hi, key);
    }
    uint32_t l, h;
    lanes_min_max(lo, hi, &l, &h);
    for (; i < n; i++) {
        keys[i] = order_key(v[i] == v[i] ? v[i] : -__builtin_inff());
        l = keys[i] < l ? keys[i] : l;
        h = keys[i] > h ? keys[i] : h;
    }
    *lo_out = l;
    *hi_out = h;
}

float us_topk_bound(const float *v, size_t n, size_t k)
{
    enum { MAX_N = 2048 };
    int level = isa_level();
    if (v == NULL || k == 0 || k > n || n > MAX_N || level < 1)
        return -__builtin_inff();
    uint32_t keys[MAX_N + 16];
    int wide = level >= 2;
    size_t padded = wide ? (n + 15) / 16 * 16 : (n + 7) / 8 * 8;
    uint32_t lo, hi;
    bound_keys(keys, &lo, &hi, v, n);
    for (size_t i = n; i < padded; i++)
        keys[i] = 0;                     /* below every trial of kth_largest_key */
    uint32_t K = wide ? kth_largest_key_512(keys, padded, k, lo, hi)
                      : kth_largest_key(keys, padded, k, lo, hi);
    float t = key_value(K);
    return t == t ? t : -__builtin_inff();
}

int us_topk_rows(uint32_t *out_idx, float *out_val, const float *scores, size_t n_rows,
                 size_t n, size_t ld, size_t k, int n_threads, us_err *err)
{
    int rc = check_args(out_idx, scores, n, k, err);
    if (rc != US_OK || k == 0 || n_rows == 0)
        return rc;
    if (ld < n)
        return us_err_set(err, US_EINVAL, "top-k rows: ld %zu < n %zu", ld, n);
    int level = isa_level();
    int nt = n_threads;
    if (nt <= 0) {
        /* the default: at least 64 Ki scores per thread (a team costs more
         * than a few small rows); an explicit n_threads is honoured */
        size_t fit = n_rows * n / (64 * 1024);
        nt = omp_get_max_threads();
        if ((size_t)nt > fit)
            nt = fit < 1 ? 1 : (int)fit;
    }
    if ((size_t)nt > n_rows)
        nt = (int)n_rows;
    #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (size_t r = 0; r < n_rows; r++)
        topk_one(out_idx + r * k, out_val ? out_val + r * k : NULL, scores + r * ld, n, k, level,
                 NO_HINT);
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

int us_topk_set_ref(uint32_t *out_idx, uint32_t *out_rank, const float *scores, size_t n,
                    size_t k, us_err *err)
{
    uint32_t best[US_TOPK_MAX_K];
    int rc = check_set_args(out_idx, out_rank, scores, n, k, err);
    if (rc != US_OK || k == 0 || (rc = us_topk_ref(best, NULL, scores, n, k, err)) != US_OK)
        return rc;
    set_from_best(out_idx, out_rank, best, k);
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
