/* gate.c — a measured choice between two arms, batch by batch (see gate.h). */
#include "coordinator/lookup/gate.h"

#include <string.h>

double us_gate_median(const us_gate *g, bool arm)
{
    int a = arm;
    uint32_t n = g->n[a];
    if (n < US_GATE_MIN)
        return -1.0;
    double v[US_GATE_WINDOW];
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

void us_gate_init(us_gate *g)
{
    memset(g, 0, sizeof *g);
    g->best = g->last = true;
    g->interval = g->until_probe = US_GATE_MIN_INTERVAL;
}

/* The arm's latest sample. */
static double latest(const us_gate *g, int a)
{
    return g->cost[a][(g->next[a] + US_GATE_WINDOW - 1) % US_GATE_WINDOW];
}

/* Past warm-up and exploration: the chosen arm, or a probe of the other. */
static bool exploit(us_gate *g)
{
    if (g->probe_left > 0) {
        if (--g->probe_left == 0)
            g->probed = true;
        return !g->best;
    }
    bool probed_arm = !g->best;
    g->best = us_gate_median(g, true) <= us_gate_median(g, false);
    if (g->probed) {   /* judge the probe that just ended */
        g->probed = false;
        bool beat = g->best == probed_arm ||
                    latest(g, probed_arm) < us_gate_median(g, g->best);
        g->interval = beat ? US_GATE_MIN_INTERVAL
                    : g->interval * 2 < US_GATE_MAX_INTERVAL
                    ? g->interval * 2 : US_GATE_MAX_INTERVAL;
        g->until_probe = g->interval;
    }
    if (g->until_probe > 0) {
        g->until_probe--;
        return g->best;
    }
    g->probe_left = US_GATE_PROBE_LEN - 1;
    if (g->probe_left == 0)
        g->probed = true;
    return !g->best;
}

bool us_gate_next(us_gate *g)
{
    uint64_t i = g->decided++;
    bool use;
    if (i < US_GATE_WARM)
        use = true;
    else if (g->n[1] < US_GATE_MIN)
        use = true;
    else if (g->n[0] < US_GATE_MIN)
        use = false;
    else
        use = exploit(g);
    g->measure = i >= US_GATE_WARM && use == g->last;
    g->last = use;
    g->used[use]++;
    return use;
}

void us_gate_record(us_gate *g, bool arm, double seconds, uint64_t pairs)
{
    if (!g->measure || pairs == 0 || !(seconds > 0))
        return;
    int a = arm;
    g->cost[a][g->next[a]] = seconds / (double)pairs;
    g->next[a] = (g->next[a] + 1) % US_GATE_WINDOW;
    if (g->n[a] < US_GATE_WINDOW)
        g->n[a]++;
}
