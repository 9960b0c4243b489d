/* cachegate.c — measured on/off choice for the row cache (see cachegate.h). */
#include "coordinator/lookup/cachegate.h"

#include <string.h>

double us_cachegate_median(const us_cachegate *g, bool cache_arm)
{
    int a = cache_arm;
    uint32_t n = g->n[a];
    if (n < US_CACHEGATE_MIN)
        return -1.0;
    double v[US_CACHEGATE_WINDOW];
    memcpy(v, g->cost[a], n * sizeof *v);
    for (uint32_t i = 1; i < n; i++) {          /* insertion sort: n <= 9 */
        double x = v[i];
        uint32_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void us_cachegate_init(us_cachegate *g)
{
    memset(g, 0, sizeof *g);
    g->best = g->last = true;
    g->interval = g->until_probe = US_CACHEGATE_MIN_INTERVAL;
}

/* The arm's latest sample. */
static double latest(const us_cachegate *g, int a)
{
    return g->cost[a][(g->next[a] + US_CACHEGATE_WINDOW - 1) % US_CACHEGATE_WINDOW];
}

/* Past warm-up and exploration: the chosen arm, or a probe of the other. */
static bool exploit(us_cachegate *g)
{
    if (g->probe_left > 0) {
        if (--g->probe_left == 0)
            g->probed = true;
        return !g->best;
    }
    bool probed_arm = !g->best;
    g->best = us_cachegate_median(g, true) <= us_cachegate_median(g, false);
    if (g->probed) {   /* judge the probe that just ended */
        g->probed = false;
        bool beat = g->best == probed_arm ||
                    latest(g, probed_arm) < us_cachegate_median(g, g->best);
        g->interval = beat ? US_CACHEGATE_MIN_INTERVAL
                    : g->interval * 2 < US_CACHEGATE_MAX_INTERVAL
                    ? g->interval * 2 : US_CACHEGATE_MAX_INTERVAL;
        g->until_probe = g->interval;
    }
    if (g->until_probe > 0) {
        g->until_probe--;
        return g->best;
    }
    g->probe_left = US_CACHEGATE_PROBE_LEN - 1;
    if (g->probe_left == 0)
        g->probed = true;
    return !g->best;
}

bool us_cachegate_next(us_cachegate *g)
{
    uint64_t i = g->decided++;
    bool use;
    if (i < US_CACHEGATE_WARM)
        use = true;
    else if (g->n[1] < US_CACHEGATE_MIN)
        use = true;
    else if (g->n[0] < US_CACHEGATE_MIN)
        use = false;
    else
        use = exploit(g);
    g->measure = i >= US_CACHEGATE_WARM && use == g->last;
    g->last = use;
    g->used[use]++;
    return use;
}

void us_cachegate_record(us_cachegate *g, bool used_cache, double seconds, uint64_t pairs)
{
    if (!g->measure || pairs == 0 || !(seconds > 0))
        return;
    int a = used_cache;
    g->cost[a][g->next[a]] = seconds / (double)pairs;
    g->next[a] = (g->next[a] + 1) % US_CACHEGATE_WINDOW;
    if (g->n[a] < US_CACHEGATE_WINDOW)
        g->n[a]++;
}
