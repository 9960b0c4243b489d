/* attention.c — causal segment attention, sgemm path and scalar reference. */
#include "kernels/attention.h"

#include <cblas.h>
#include <math.h>

#include "kernels/activation.h"
#include "kernels/us_status.h"

static int check_shape(size_t n_q, size_t n_kv, size_t n_heads, size_t head_dim)
{
    if (n_q > n_kv)
        return US_EINVAL;
    if (n_heads == 0 || head_dim == 0)
        return n_q == 0 ? US_OK : US_EINVAL;
    return US_OK;
}

/* One query, all heads, against keys 0..n-1 (rows of width = H * head_dim):
 * p[h][j] = scale * q_h . k_j[h], softmax per head, o_h = sum_j p[h][j] v_j[h].
 * Key-major with the heads inside, so each cache row is read once, front to
 * back: the caches of a decoding batch do not fit in any cache level and a
 * head-major walk reads every row in four strided pieces. Cloned for AVX2 so
 * the head_dim loops run 8 wide; the softmax is the one the sgemm path uses.
 * p holds n_heads * n floats. */
__attribute__((target_clones("avx2", "default")))
static void attend_query(float *o, float *p, const float *qi, const float *k, const float *v,
                         size_t n, size_t n_heads, size_t head_dim, float scale)
{
    const size_t width = n_heads * head_dim;
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + j * width;
        for (size_t h = 0; h < n_heads; h++) {
            const float *qh = qi + h * head_dim, *kh = kj + h * head_dim;
            float s = 0.0f;
            #pragma omp simd reduction(+:s)
            for (size_t d = 0; d < head_dim; d++)
                s += qh[d] * kh[d];
            p[h * n + j] = s * scale;
        }
    }
    us_softmax_rows(p, p, n_heads, n);
    for (size_t d = 0; d < width; d++)
        o[d] = 0.0f;
    for (size_t j = 0; j < n; j++) {
        const float *vj = v + j * width;
        for (size_t h = 0; h < n_heads; h++) {
            const float pj = p[h * n + j], *vh = vj + h * head_dim;
            float *oh = o + h * head_dim;
            #pragma omp simd
            for (size_t d = 0; d < head_dim; d++)
                oh[d] += pj * vh[d];
        }
    }
}

/* Decoding (a token or a few per sequence) runs one query at a time: there
 * each cblas_sgemm call packs the whole key/value block and pays its
 * dispatch for a 1-row product, which cost more than the product
 * (callgrind, bench_models batch 64: ~23 M instructions a step in 2048
 * calls). Masked keys are never read. */
#define DIRECT_MAX_Q 4

int us_causal_attention_forward(float *out, float *scratch, const float *q,
                                const float *k, const float *v, size_t n_q,
                                size_t n_kv, size_t n_heads, size_t head_dim)
{
    int rc = check_shape(n_q, n_kv, n_heads, head_dim);
    if (rc != US_OK || n_q == 0)
        return rc;
    const size_t width = n_heads * head_dim;
    const size_t offset = n_kv - n_q;
    const float scale = 1.0f / sqrtf((float)head_dim);
    if (n_q <= DIRECT_MAX_Q) {
        for (size_t i = 0; i < n_q; i++)
            attend_query(out + i * width, scratch, q + i * width, k, v, offset + i + 1,
                         n_heads, head_dim, scale);
        return US_OK;
    }
    for (size_t h = 0; h < n_heads; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_q, (int)n_kv,
                    (int)head_dim, scale, q + h * head_dim, (int)width,
                    k + h * head_dim, (int)width, 0.0f, scratch, (int)n_kv);
        for (size_t i = 0; i < n_q; i++)
            for (size_t j = offset + i + 1; j < n_kv; j++)
                scratch[i * n_kv + j] = -INFINITY;
        us_softmax_rows(scratch, scratch, n_q, n_kv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_q, (int)head_dim,
                    (int)n_kv, 1.0f, scratch, (int)n_kv, v + h * head_dim, (int)width,
                    0.0f, out + h * head_dim, (int)width);
    }
    return US_OK;
}

int us_causal_attention_ref(float *out, const float *q, const float *k,
                            const float *v, size_t n_q, size_t n_kv,
                            size_t n_heads, size_t head_dim)
{
    int rc = check_shape(n_q, n_kv, n_heads, head_dim);
    if (rc != US_OK || n_q == 0)
        return rc;
    const size_t width = n_heads * head_dim;
    const size_t offset = n_kv - n_q;
    const float scale = 1.0f / sqrtf((float)head_dim);
    for (size_t i = 0; i < n_q; i++) {
        for (size_t h = 0; h < n_heads; h++) {
            const float *qi = q + i * width + h * head_dim;
            float *o = out + i * width + h * head_dim;
            size_t last = offset + i;
            float max = -INFINITY;
            int any_nan = 0;
            for (size_t j = 0; j <= last; j++) {
                const float *kj = k + j * width + h * head_dim;
                float s = 0.0f;
                for (size_t d = 0; d < head_dim; d++)
                    s += qi[d] * kj[d];
                s *= scale;
                any_nan |= isnan(s);
                if (s > max)
                    max = s;
            }
            for (size_t d = 0; d < head_dim; d++)
                o[d] = 0.0f;
            if (any_nan) {
                for (size_t d = 0; d < head_dim; d++)
                    o[d] = NAN;
                continue;
            }
            double sum = 0.0;
            for (size_t j = 0; j <= last; j++) {
                const float *kj = k + j * width + h * head_dim;
                const float *vj = v + j * width + h * head_dim;
                float s = 0.0f;
                for (size_t d = 0; d < head_dim; d++)
                    s += qi[d] * kj[d];
                float p = expf(s * scale - max);
                sum += p;
                for (size_t d = 0; d < head_dim; d++)
                    o[d] += p * vj[d];
            }
            float inv = (float)(1.0 / sum);
            for (size_t d = 0; d < head_dim; d++)
                o[d] *= inv;
        }
    }
    return US_OK;
}
