/* infini.c — Infini-attention memory retrieve/update/gate: see infini.h. */
#include "kernels/infini.h"

#include <cblas.h>

#include "kernels/activation.h"

/* s(X_h) for one head into dst [T][d_key] (contiguous). */
static void feature_map(float *dst, const float *x, size_t T, size_t n_heads,
                        size_t d_key, size_t h)
{
    for (size_t t = 0; t < T; t++)
        us_elu1(dst + t * d_key, x + t * n_heads * d_key + h * d_key, d_key);
}

static float dot(const float *a, const float *b, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* rows [T][d_value] (stride ld) /= den(t), with the 0-denominator rule. */
static void divide_rows(float *rows, size_t ld, const float *sx, const float *z,
                        size_t T, size_t d_key, size_t d_value)
{
    for (size_t t = 0; t < T; t++) {
        float den = dot(sx + t * d_key, z, d_key);
        float *r = rows + t * ld;
        for (size_t j = 0; j < d_value; j++)
            r[j] = den == 0.0f ? 0.0f : r[j] / den;
    }
}

/* a = s(q) M_h / (s(q) . z_h) for one token and head: sq = s(q) [d_key],
 * a [d_value]. Cloned for AVX2 so the row updates run 8 wide. */
__attribute__((target_clones("avx2", "default")))
static void retrieve_one(float *a, const float *sq, const float *Mh, const float *zh,
                         size_t d_key, size_t d_value)
{
    for (size_t j = 0; j < d_value; j++)
        a[j] = 0.0f;
    for (size_t i = 0; i < d_key; i++) {
        const float si = sq[i], *row = Mh + i * d_value;
        #pragma omp simd
        for (size_t j = 0; j < d_value; j++)
            a[j] += si * row[j];
    }
    divide_rows(a, d_value, sq, zh, 1, d_key, d_value);
}

/* Decoding retrieves one token per sequence: a 1-row cblas_sgemm per head
 * packs all of M_h for d_key * d_value multiply-adds and cost about twice
 * the direct loops (callgrind, bench_models batch 64). */
#define RETRIEVE_DIRECT_MAX_T 4

void us_infini_retrieve(float *a_mem, float *scratch, const float *q,
                        const float *M, const float *z, size_t T,
                        size_t n_heads, size_t d_key, size_t d_value)
{
    if (T == 0 || n_heads == 0 || d_value == 0)
        return;
    if (T <= RETRIEVE_DIRECT_MAX_T) {
        for (size_t t = 0; t < T; t++)
            for (size_t h = 0; h < n_heads; h++) {
                us_elu1(scratch, q + (t * n_heads + h) * d_key, d_key);
                retrieve_one(a_mem + (t * n_heads + h) * d_value, scratch,
                             M + h * d_key * d_value, z + h * d_key, d_key, d_value);
            }
        return;
    }
    const size_t ld = n_heads * d_value;
    for (size_t h = 0; h < n_heads; h++) {
        feature_map(scratch, q, T, n_heads, d_key, h);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d_value,
                    (int)d_key, 1.0f, scratch, (int)d_key, M + h * d_key * d_value,
                    (int)d_value, 0.0f, a_mem + h * d_value, (int)ld);
        divide_rows(a_mem + h * d_value, ld, scratch, z + h * d_key, T, d_key, d_value);
    }
}

void us_infini_update(float *M, float *z, float *scratch, const float *k,
                      const float *v, size_t T, size_t n_heads, size_t d_key,
                      size_t d_value, us_infini_rule rule)
{
    if (T == 0 || n_heads == 0)
        return;
    const size_t ldv = n_heads * d_value;
    float *sk = scratch;
    float *dv = scratch + T * d_key;
    for (size_t h = 0; h < n_heads; h++) {
        float *Mh = M + h * d_key * d_value;
        float *zh = z + h * d_key;
        feature_map(sk, k, T, n_heads, d_key, h);
        const float *vals = v + h * d_value;
        int ldvals = (int)ldv;
        if (rule == US_INFINI_DELTA) {
            /* dv = V - s(K) M / (s(K) z), from the memory before this update. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)d_value,
                        (int)d_key, 1.0f, sk, (int)d_key, Mh, (int)d_value, 0.0f, dv,
                        (int)d_value);
            divide_rows(dv, d_value, sk, zh, T, d_key, d_value);
            for (size_t t = 0; t < T; t++)
                for (size_t j = 0; j < d_value; j++)
                    dv[t * d_value + j] = v[t * ldv + h * d_value + j] - dv[t * d_value + j];
            vals = dv;
            ldvals = (int)d_value;
        }
        if (d_value > 0 && d_key > 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d_key, (int)d_value,
                        (int)T, 1.0f, sk, (int)d_key, vals, ldvals, 1.0f, Mh,
                        (int)d_value);
        for (size_t t = 0; t < T; t++)
            for (size_t i = 0; i < d_key; i++)
                zh[i] += sk[t * d_key + i];
    }
}

void us_infini_gate(float *out, const float *a_mem, const float *a_dot,
                    const float *beta, size_t T, size_t n_heads, size_t d_value)
{
    for (size_t h = 0; h < n_heads; h++) {
        float g = us_sigmoidf(beta[h]);
        for (size_t t = 0; t < T; t++) {
            size_t base = t * n_heads * d_value + h * d_value;
            for (size_t j = 0; j < d_value; j++)
                out[base + j] = g * a_mem[base + j] + (1.0f - g) * a_dot[base + j];
        }
    }
}

void us_infini_retrieve_ref(float *a_mem, const float *q, const float *M,
                            const float *z, size_t T, size_t n_heads,
                            size_t d_key, size_t d_value)
{
    for (size_t t = 0; t < T; t++) {
        for (size_t h = 0; h < n_heads; h++) {
            const float *qt = q + t * n_heads * d_key + h * d_key;
            const float *Mh = M + h * d_key * d_value;
            float den = 0.0f;
            for (size_t i = 0; i < d_key; i++)
                den += us_elu1f(qt[i]) * z[h * d_key + i];
            float *o = a_mem + t * n_heads * d_value + h * d_value;
            for (size_t j = 0; j < d_value; j++) {
                float num = 0.0f;
                for (size_t i = 0; i < d_key; i++)
                    num += us_elu1f(qt[i]) * Mh[i * d_value + j];
                o[j] = den == 0.0f ? 0.0f : num / den;
            }
        }
    }
}

void us_infini_update_ref(float *M, float *z, float *scratch, const float *k,
                          const float *v, size_t T, size_t n_heads, size_t d_key,
                          size_t d_value, us_infini_rule rule)
{
    /* scratch [T][d_value]: the values actually written (V or V - retrieved),
     * all computed from the old M and z before either changes. */
    for (size_t h = 0; h < n_heads; h++) {
        float *Mh = M + h * d_key * d_value;
        float *zh = z + h * d_key;
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + t * n_heads * d_key + h * d_key;
            const float *vt = v + t * n_heads * d_value + h * d_value;
            float den = 0.0f;
            for (size_t i = 0; i < d_key; i++)
                den += us_elu1f(kt[i]) * zh[i];
            for (size_t j = 0; j < d_value; j++) {
                float ret = 0.0f;
                if (rule == US_INFINI_DELTA) {
                    float num = 0.0f;
                    for (size_t i = 0; i < d_key; i++)
                        num += us_elu1f(kt[i]) * Mh[i * d_value + j];
                    ret = den == 0.0f ? 0.0f : num / den;
                }
                scratch[t * d_value + j] = vt[j] - ret;
            }
        }
        for (size_t t = 0; t < T; t++) {
            const float *kt = k + t * n_heads * d_key + h * d_key;
            for (size_t i = 0; i < d_key; i++) {
                float s = us_elu1f(kt[i]);
                for (size_t j = 0; j < d_value; j++)
                    Mh[i * d_value + j] += s * scratch[t * d_value + j];
                zh[i] += s;
            }
        }
    }
}
