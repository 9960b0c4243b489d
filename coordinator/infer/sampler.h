/*
 * sampler.h — choosing the next token from logits.
 *
 * temperature == 0: greedy, the highest logit (ties: lower token id).
 * temperature > 0: softmax(logits / temperature), then nucleus (top-p): the
 * smallest set of most likely tokens whose probability reaches top_p
 * (ties ordered by token id), renormalised; one uniform draw picks a token.
 * Tokens whose `allowed` flag is 0 are never chosen (e.g. BOS, PAD).
 *
 * Each sequence owns its random stream (us_rng, SplitMix64) seeded from the
 * job seed and the sequence id, so a sequence's output does not depend on
 * which other sequences share its batch or on a restart.
 * scratch: us_sampler_scratch_bytes(n) bytes, 8-byte aligned (e.g. malloc).
 */
#ifndef US_SAMPLER_H
#define US_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct us_rng {
    uint64_t state;
} us_rng;

/* Seeds *r with the stream of (seed, stream_name). Returns: nothing. */
void     us_rng_seed(us_rng *r, uint64_t seed, const char *stream_name);
/* Returns: the stream's next 64 random bits. */
uint64_t us_rng_next(us_rng *r);
/* Returns: a uniform double in [0, 1) with 53 random bits. */
double   us_rng_uniform(us_rng *r);

typedef struct us_sampler_params {
    float temperature;   /* 0 = greedy */
    float top_p;         /* (0, 1]; 1 = no truncation */
} us_sampler_params;

/* Returns: the bytes of scratch us_sample needs for n logits. */
size_t us_sampler_scratch_bytes(size_t n);

/* Samples one token of logits[0..n) among allowed ones (allowed NULL: all).
 * Returns: the chosen token in [0, n), or -1 if no token is allowed or all
 * allowed logits are NaN. */
int us_sample(const float *logits, const uint8_t *allowed, size_t n,
              const us_sampler_params *params, us_rng *rng, void *scratch);

#endif
