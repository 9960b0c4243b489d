/*
 * attention.h — causal multi-head softmax attention inside one segment.
 *
 * Layout (token-major, heads interleaved, as a fused projection produces):
 *   q   [n_q][n_heads * head_dim]
 *   k,v [n_kv][n_heads * head_dim]
 *   out [n_q][n_heads * head_dim]
 * Query i sits at position p_i = n_kv - n_q + i of the segment and attends
 * keys 0..p_i (causal). So prefill of a whole segment is n_q = n_kv, and
 * decoding one token against a KV cache of the segment is n_q = 1. Scores
 * are scaled by 1/sqrt(head_dim). No positional encoding is applied here
 * (the model is NoPE: causal masking alone orders the tokens).
 *
 * us_causal_attention_forward is the fast path: per head two cblas_sgemm
 * (Q K^T, then P V) on strided views, masking and a stable row softmax in
 * between; up to 4 queries (decoding) direct loops per query instead,
 * reading no masked key. scratch holds max(n_q, n_heads) * n_kv floats. us_causal_attention_ref is the
 * scalar reference (no scratch, three passes over the keys).
 *
 * NaN/Inf never crash; a NaN in an attended key/value/query makes that
 * output NaN. In the fast path a NaN value at a
 * masked (future) key can also reach earlier queries (0 * NaN); the
 * reference does not read masked keys.
 */
#ifndef US_ATTENTION_H
#define US_ATTENTION_H

#include <stddef.h>

/* Returns: US_OK (also for n_q = 0); US_EINVAL when n_q > n_kv, or n_heads
 * or head_dim is 0 while n_q is not (nothing written). No us_err: shapes
 * are the caller's contract and the code says which check failed. */
int us_causal_attention_forward(float *out, float *scratch, const float *q,
                                const float *k, const float *v, size_t n_q,
                                size_t n_kv, size_t n_heads, size_t head_dim);

/* Returns: as us_causal_attention_forward. */
int us_causal_attention_ref(float *out, const float *q, const float *k,
                            const float *v, size_t n_q, size_t n_kv,
                            size_t n_heads, size_t head_dim);

#endif
