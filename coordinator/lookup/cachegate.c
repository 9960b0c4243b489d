/* cachegate.c — measured on/off choice for the row cache (see cachegate.h). */
#include "coordinator/lookup/cachegate.h"

#include <string.h>

void us_cachegate_init(us_cachegate *g)
{
    memset(g, 0, sizeof *g);
}

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

bool us_cachegate_next(us_cachegate *g)
{
    uint64_t i = g->decided++;
    bool use;
    g->warming = i < US_CACHEGATE_WARM;
    if (g->warming) {
        use = true;
    } else if (g->n[1] < US_CACHEGATE_MIN || g->n[0] < US_CACHEGATE_MIN) {
        use = g->n[1] < US_CACHEGATE_MIN;       /* explore the arm short of samples */
    } else {
        bool best = us_cachegate_median(g, true) <= us_cachegate_median(g, false);
        use = (i - US_CACHEGATE_WARM) % US_CACHEGATE_PROBE == US_CACHEGATE_PROBE - 1
            ? !best : best;
    }
    g->used[use]++;
    return use;
}

void us_cachegate_record(us_cachegate *g, bool used_cache, double seconds, uint64_t pairs)
{
    if (g->warming || pairs == 0 || !(seconds > 0))
        return;
    int a = used_cache;
    g->cost[a][g->next[a]] = seconds / (double)pairs;
    g->next[a] = (g->next[a] + 1) % US_CACHEGATE_WINDOW;
    if (g->n[a] < US_CACHEGATE_WINDOW)
        g->n[a]++;
}
