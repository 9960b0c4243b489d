/*
 * bench_nn.c — the nn kernels' fast paths against their scalar references,
 * same inputs, same run: causal segment attention (prefill of a segment and
 * one decode step), Infini-attention retrieve and delta update, IVE
 * projection. One JSON line per case: ns per call of each, the speedup
 * ratio ref/fast, the max difference between them (relative to max(1,
 * |ref|); a fast path that got fast by being wrong shows) and the bytes used.
 * Usage: bench_nn [reps_scale]   (OPENBLAS_NUM_THREADS set by the caller)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/attention.h"
#include "kernels/infini.h"
#include "kernels/ive.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static float *rnd(size_t n, unsigned *seed)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        a[i] = ((*seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return a;
}

/* max |a - b| / max(1, max |b|): a relative error for growing values (the
 * memory M after repeated updates), an absolute one for O(1) outputs. */
static float maxdiff(const float *a, const float *b, size_t n)
{
    float m = 0, big = 1.0f;
    for (size_t i = 0; i < n; i++) {
        m = fmaxf(m, fabsf(a[i] - b[i]));
        big = fmaxf(big, fabsf(b[i]));
    }
    return m / big;
}

static void report(const char *name, const char *shape, double fast_ns, double ref_ns,
                   float diff, size_t bytes)
{
    printf("{\"bench\":\"nn\",\"case\":\"%s\",\"shape\":\"%s\",\"fast_ns\":%.0f,\"ref_ns\":%.0f,"
           "\"speedup_vs_ref\":%.2f,\"max_rel_diff\":%.3g,\"bytes\":%zu}\n",
           name, shape, fast_ns, ref_ns, ref_ns / fast_ns, diff, bytes);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    unsigned seed = 1;
    const size_t Ls[2] = { 128, 512 }, H = 8, dh = 64, w = H * dh;
    for (int li = 0; li < 2; li++) {
        size_t L = Ls[li];
        float *q = rnd(L * w, &seed), *k = rnd(L * w, &seed), *v = rnd(L * w, &seed);
        float *o1 = malloc(L * w * 4), *o2 = malloc(L * w * 4), *scr = malloc(L * L * 4);
        char shape[64];
        int reps = (int)fmax(1, scale * (L == 128 ? 20 : 3));
        double t = now_ns();
        for (int r = 0; r < reps; r++)
            us_causal_attention_forward(o1, scr, q, k, v, L, L, H, dh);
        double fast = (now_ns() - t) / reps;
        t = now_ns();
        for (int r = 0; r < reps; r++)
            us_causal_attention_ref(o2, q, k, v, L, L, H, dh);
        double ref = (now_ns() - t) / reps;
        snprintf(shape, sizeof shape, "T=%zu H=%zu dh=%zu", L, H, dh);
        report("attention_prefill", shape, fast, ref, maxdiff(o1, o2, L * w),
               (4 * L * w + L * L) * 4);
        reps = (int)fmax(1, scale * 200);
        t = now_ns();
        for (int r = 0; r < reps; r++)
            us_causal_attention_forward(o1, scr, q + (L - 1) * w, k, v, 1, L, H, dh);
        fast = (now_ns() - t) / reps;
        t = now_ns();
        for (int r = 0; r < reps; r++)
            us_causal_attention_ref(o2, q + (L - 1) * w, k, v, 1, L, H, dh);
        ref = (now_ns() - t) / reps;
        snprintf(shape, sizeof shape, "1 query, cache %zu, H=%zu dh=%zu", L, H, dh);
        report("attention_decode", shape, fast, ref, maxdiff(o1, o2, w), (3 * L * w + L) * 4);

        float *M1 = calloc(H * dh * dh, 4), *z1 = calloc(H * dh, 4);
        float *M2 = calloc(H * dh * dh, 4), *z2 = calloc(H * dh, 4);
        float *iscr = malloc(L * 2 * dh * 4);
        reps = (int)fmax(1, scale * 10);
        double fu = 0, ru = 0, fr = 0, rr = 0;
        for (int r = 0; r < reps; r++) {   /* each rep: retrieve, then update */
            t = now_ns();
            us_infini_retrieve(o1, iscr, q, M1, z1, L, H, dh, dh);
            fr += now_ns() - t;
            t = now_ns();
            us_infini_update(M1, z1, iscr, k, v, L, H, dh, dh, US_INFINI_DELTA);
            fu += now_ns() - t;
            t = now_ns();
            us_infini_retrieve_ref(o2, q, M2, z2, L, H, dh, dh);
            rr += now_ns() - t;
            t = now_ns();
            us_infini_update_ref(M2, z2, iscr, k, v, L, H, dh, dh, US_INFINI_DELTA);
            ru += now_ns() - t;
        }
        snprintf(shape, sizeof shape, "T=%zu H=%zu dk=dv=%zu", L, H, dh);
        report("infini_retrieve", shape, fr / reps, rr / reps, maxdiff(o1, o2, L * w),
               (2 * L * w + H * dh * (dh + 1)) * 4);
        report("infini_update_delta", shape, fu / reps, ru / reps,
               maxdiff(M1, M2, H * dh * dh),
               (2 * L * w + H * dh * (dh + 1) + L * 2 * dh) * 4);
        free(q); free(k); free(v); free(o1); free(o2); free(scr);
        free(M1); free(z1); free(M2); free(z2); free(iscr);
    }
    size_t T = 64, E = 4, vd = 128, d = 512;
    float *P = rnd(T * E * vd, &seed), *W = rnd(E * vd * d, &seed);
    float *o1 = calloc(T * d, 4), *o2 = calloc(T * d, 4);
    int reps = (int)fmax(1, scale * 20);
    double t = now_ns();
    for (int r = 0; r < reps; r++)
        us_ive_project(o1, P, W, T, E, vd, d, 0);
    double fast = (now_ns() - t) / reps;
    t = now_ns();
    for (int r = 0; r < reps; r++)
        us_ive_project_ref(o2, P, W, T, E, vd, d, 0);
    double ref = (now_ns() - t) / reps;
    report("ive_project", "T=64 E=4 v=128 d=512", fast, ref, maxdiff(o1, o2, T * d),
           (T * E * vd + E * vd * d + T * d) * 4);
    free(P); free(W); free(o1); free(o2);
    return 0;
}
