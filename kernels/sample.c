/* sample.c — greedy and temperature/top-p token choice: see sample.h. */
#include "kernels/sample.h"

#include <math.h>
#include <stdlib.h>

typedef struct { double p; uint32_t id; } prob_entry;

int us_logits_argmax(const float *logits, const uint8_t *allowed, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if ((!allowed || allowed[i]) && !isnan(logits[i]) &&
            (best < 0 || logits[i] > logits[best]))
            best = (int)i;
    return best;
}

size_t us_sample_top_p_scratch_bytes(size_t n)
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

int us_sample_top_p(const float *logits, const uint8_t *allowed, size_t n, int best,
                    float temperature, float top_p, double u, void *scratch)
{
    prob_entry *e = scratch;
    size_t m = 0;
    double max = logits[best], sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if ((allowed && !allowed[i]) || isnan(logits[i]))
            continue;
        double p = exp(((double)logits[i] - max) / temperature);
        e[m++] = (prob_entry){ p, (uint32_t)i };
        sum += p;
    }
    qsort(e, m, sizeof *e, by_prob_desc);
    double keep = 0.0;
    size_t k = 0;
    while (k < m) {
        keep += e[k].p;
        k++;
        if (keep >= top_p * sum)
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
