/*
 * sample.h — picking a token from logits: greedy and temperature/top-p.
 *
 * Pure functions: the random draw u is the caller's (coordinator/infer/
 * sampler.h owns the per-sequence streams), so a kernel call is a function
 * of its arguments.
 *
 *   us_logits_argmax  the highest allowed, non-NaN logit; ties go to the
 *                     lower index.
 *   us_sample_top_p   p_i = exp((logit_i - logit_best) / temperature) in
 *                     double over the allowed, non-NaN logits; sorted by p
 *                     descending (ties: lower index first), the shortest
 *                     prefix whose mass reaches top_p * sum is kept, and u in
 *                     [0, 1) picks from it by cumulative mass.
 * allowed may be NULL (every token allowed).
 */
#ifndef US_SAMPLE_H
#define US_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* Returns: the index in [0, n) of the best allowed logit; -1 when no token
 * is allowed or every allowed logit is NaN. Cannot fail. */
int us_logits_argmax(const float *logits, const uint8_t *allowed, size_t n);

/* Returns: bytes of scratch us_sample_top_p needs for n logits (8-byte
 * aligned memory, e.g. malloc); cannot fail. */
size_t us_sample_top_p_scratch_bytes(size_t n);

/* best = us_logits_argmax(...) >= 0, temperature > 0, top_p in (0, 1].
 * Returns: the chosen index in [0, n) (an allowed, non-NaN logit); cannot
 * fail. */
int us_sample_top_p(const float *logits, const uint8_t *allowed, size_t n, int best,
                    float temperature, float top_p, double u, void *scratch);

#endif
