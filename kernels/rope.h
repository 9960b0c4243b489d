/*
 * rope.h — rotary position embedding (RoPE, Su et al. 2021) of attention rows.
 *
 * Rows are [n_rows][n_heads * head_dim] (token-major, heads interleaved, as
 * the fused q/k projections produce); row i sits at position pos0 + i. Each
 * head's vector x of D = head_dim (even) is rotated pair by pair with the
 * half-split pairing ("rotate_half", GPT-NeoX / HF LLaMA): pair (j, j + D/2),
 * inv_freq[j] = theta^(-2j/D), angle a = p * inv_freq[j], j in [0, D/2):
 *
 *   x'[j]       = x[j] cos a - x[j + D/2] sin a
 *   x'[j + D/2] = x[j + D/2] cos a + x[j] sin a
 *
 * so q(m) . k(n) depends on m - n only. Angles and their cos/sin are
 * computed in double and rounded once to float (the model's positions are
 * in-segment indices, so angles stay small enough for f32 twins to agree).
 *
 * Pure functions: caller buffers, no allocation. `out` may alias `in`.
 * us_rope_forward computes each (position, pair) cos/sin once for all heads;
 * us_rope_ref is the plain per-element formula the unit test compares it
 * with, and both are tested against the closed form of a 2-D rotation.
 */
#ifndef US_ROPE_H
#define US_ROPE_H

#include <stddef.h>

/* Rotates n_rows rows (positions pos0, pos0 + 1, ...) with base theta > 0.
 * Returns: nothing; cannot fail (n_rows = 0 or head_dim < 2 is a no-op; an
 * odd head_dim leaves the last element of each head unrotated, but the model
 * config refuses it). */
void us_rope_forward(float *out, const float *in, size_t n_rows, size_t n_heads,
                     size_t head_dim, size_t pos0, float theta);

/* Scalar reference of us_rope_forward. Returns: nothing; cannot fail. */
void us_rope_ref(float *out, const float *in, size_t n_rows, size_t n_heads,
                 size_t head_dim, size_t pos0, float theta);

#endif
