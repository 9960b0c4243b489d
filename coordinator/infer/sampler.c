/* sampler.c — greedy and temperature/top-p sampling: see sampler.h. */
#include "coordinator/infer/sampler.h"

#include "kernels/hash.h"
#include "kernels/sample.h"

void us_rng_seed(us_rng *r, uint64_t seed, const char *stream_name)
{
    uint64_t h = us_fnv1a64_str(stream_name);
    r->state = us_splitmix64_mix(seed ^ us_splitmix64_mix(h));
}

uint64_t us_rng_next(us_rng *r)
{
    return us_splitmix64_next(&r->state);
}

double us_rng_uniform(us_rng *r)
{
    return (us_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

size_t us_sampler_scratch_bytes(size_t n)
{
    return us_sample_top_p_scratch_bytes(n);
}

int us_sample(const float *logits, const uint8_t *allowed, size_t n,
              const us_sampler_params *params, us_rng *rng, void *scratch)
{
    int best = us_logits_argmax(logits, allowed, n);
    if (best < 0 || params->temperature <= 0.0f)
        return best;
    /* Draw even when the result is forced, so every step consumes one value. */
    double u = us_rng_uniform(rng);
    return us_sample_top_p(logits, allowed, n, best, params->temperature, params->top_p, u,
                           scratch);
}
