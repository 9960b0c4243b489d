/* sampler.c — greedy and temperature/top-p sampling: see sampler.h. */
#include "coordinator/infer/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/hash.h"

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

typedef struct { double p; uint32_t id; } prob_entry;

size_t us_sampler_scratch_bytes(size_t n)
{
    return n * sizeof(prob_entry);
}

static int by_prob_desc(const void *a, const void *b)
{
    const prob_entry *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

int us_sample(const float *logits, const uint8_t *allowed, size_t n,
              const us_sampler_params *params, us_rng *rng, void *scratch)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if ((!allowed || allowed[i]) && !isnan(logits[i]) &&
            (best < 0 || logits[i] > logits[best]))
            best = (int)i;
    if (best < 0 || params->temperature <= 0.0f)
        return best;
    /* Draw even when the result is forced, so every step consumes one value. */
    double u = us_rng_uniform(rng);
    prob_entry *e = scratch;   /* us_sampler_scratch_bytes(n) */
    size_t m = 0;
    double max = logits[best], sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if ((allowed && !allowed[i]) || isnan(logits[i]))
            continue;
        double p = exp(((double)logits[i] - max) / params->temperature);
        e[m++] = (prob_entry){ p, (uint32_t)i };
        sum += p;
    }
    qsort(e, m, sizeof *e, by_prob_desc);
    double keep = 0.0;
    size_t k = 0;
    while (k < m) {
        keep += e[k].p;
        k++;
        if (keep >= params->top_p * sum)
            break;
    }
    double target = u * keep, acc = 0.0;
    for (size_t i = 0; i < k; i++) {
        acc += e[i].p;
        if (target < acc)
            return (int)e[i].id;
    }
    return (int)e[k - 1].id;
}
