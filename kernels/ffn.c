/* ffn.c — SwiGLU FFN and MoE routing: see ffn.h. */
#include "kernels/ffn.h"

#include <string.h>

#include "kernels/activation.h"
#include "kernels/matmul.h"

void us_swiglu_ffn_forward(float *y, const float *h, const float *w1, const float *w3,
                           const float *w2, float *hid1, float *hid2, size_t T, size_t d,
                           size_t f)
{
    us_matmul_forward(hid1, h, w1, T, d, f, 0.0f);
    us_matmul_forward(hid2, h, w3, T, d, f, 0.0f);
    us_swiglu(hid1, hid1, hid2, T * f);
    us_matmul_forward(y, hid1, w2, T, f, d, 1.0f);
}

void us_swiglu_ffn_ref(float *y, const float *h, const float *w1, const float *w3,
                       const float *w2, float *hid1, float *hid2, size_t T, size_t d,
                       size_t f)
{
    us_matmul_ref(hid1, h, w1, T, d, f, 0.0f);
    us_matmul_ref(hid2, h, w3, T, d, f, 0.0f);
    us_swiglu(hid1, hid1, hid2, T * f);
    us_matmul_ref(y, hid1, w2, T, f, d, 1.0f);
}

size_t us_moe_dispatch(float *x_e, uint32_t *slot, const float *h, const uint32_t *expert_of,
                       size_t T, size_t K, size_t d, uint32_t e)
{
    size_t n = 0;
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < K; j++)
            if (expert_of[t * K + j] == e) {
                slot[n] = (uint32_t)(t * K + j);
                memcpy(x_e + n * d, h + t * d, d * sizeof(float));
                n++;
            }
    return n;
}

void us_moe_combine(float *x, const float *y_e, const uint32_t *slot, const float *gate,
                    size_t n, size_t K, size_t d)
{
    for (size_t i = 0; i < n; i++)
        us_axpy(x + (slot[i] / K) * d, gate[slot[i]], y_e + i * d, d);
}
