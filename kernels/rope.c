/* rope.c — rotary position embedding of attention rows: see rope.h. */
#include "kernels/rope.h"

#include <math.h>

/* Rotates one head's pair j by (c, s); reads both before writing (aliasing). */
static inline void rotate_pair(float *y, const float *x, size_t j, size_t half, float c,
                               float s)
{
    float a = x[j], b = x[j + half];
    y[j] = a * c - b * s;
    y[j + half] = b * c + a * s;
}

void us_rope_forward(float *out, const float *in, size_t n_rows, size_t n_heads,
                     size_t head_dim, size_t pos0, float theta)
{
    const size_t half = head_dim / 2, width = n_heads * head_dim;
    if (half == 0)
        return;
    for (size_t i = 0; i < n_rows; i++) {
        const double p = (double)(pos0 + i);
        for (size_t j = 0; j < half; j++) {
            double a = p * pow((double)theta, -2.0 * (double)j / (double)head_dim);
            float c = (float)cos(a), s = (float)sin(a);
            for (size_t h = 0; h < n_heads; h++)
                rotate_pair(out + i * width + h * head_dim, in + i * width + h * head_dim,
                            j, half, c, s);
        }
        if (head_dim % 2 != 0 && out != in)   /* odd tail: copied unrotated */
            for (size_t h = 0; h < n_heads; h++)
                out[i * width + h * head_dim + head_dim - 1] =
                    in[i * width + h * head_dim + head_dim - 1];
    }
}

void us_rope_ref(float *out, const float *in, size_t n_rows, size_t n_heads,
                 size_t head_dim, size_t pos0, float theta)
{
    const size_t half = head_dim / 2;
    for (size_t i = 0; i < n_rows; i++)
        for (size_t h = 0; h < n_heads; h++) {
            const float *x = in + (i * n_heads + h) * head_dim;
            float *y = out + (i * n_heads + h) * head_dim;
            for (size_t j = 0; j < half; j++) {
                double inv_freq = 1.0 / pow((double)theta, (double)(2 * j) / (double)head_dim);
                double a = (double)(pos0 + i) * inv_freq;
                float xa = x[j], xb = x[j + half];
                y[j] = xa * (float)cos(a) - xb * (float)sin(a);
                y[j + half] = xb * (float)cos(a) + xa * (float)sin(a);
            }
            if (head_dim % 2 != 0)
                y[head_dim - 1] = x[head_dim - 1];
        }
}
