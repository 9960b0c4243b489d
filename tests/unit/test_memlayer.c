/* test_memlayer.c — the UltraMem memory layer (memlayer.c) against a scalar
 * recomputation of the same layer: q = h Wq with per-chunk LayerNorm, the
 * Tucker score of every one of the n_keys^2 addresses, top-k, softmax, IVE
 * addressing (row = a / G, group = a % G), the grouped weighted sum of value
 * rows and the projection sum_g P_g W_g. With candidates = n_keys the
 * preselection keeps every row and column, so the kernel's top-k is exact
 * and must pick the same addresses as the brute force over the whole grid. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/model/memlayer.h"
#include "coordinator/model/memory_backend.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "shard/synthetic.h"

#define T_TOKENS 3

/* Scalar layer: out [T][d_model] for h [T][d_model], values [rows][v_dim]. */
static void memlayer_ref(const us_model *m, uint32_t layer, const float *h, const float *values,
                         size_t T, double *out)
{
    const us_model_config *c = &m->cfg;
    const us_memory_config *mc = &c->memory;
    const us_layer_weights *w = &m->layers[layer];
    const size_t d = c->d_model, H = mc->heads, kd = mc->k_dim, N = mc->n_keys;
    const size_t r = mc->tucker_rank, K = mc->knn, G = mc->ive_groups, vd = mc->v_dim;
    const size_t qdim = H * 2 * kd;
    double *q = calloc(qdim, sizeof *q), *grid = malloc(N * N * sizeof *grid);
    double *pooled = malloc(G * vd * sizeof *pooled);
    double *srow = malloc(r * N * sizeof *srow), *scol = malloc(r * N * sizeof *scol);
    for (size_t t = 0; t < T; t++) {
        for (size_t o = 0; o < qdim; o++) {
            q[o] = 0;
            for (size_t i = 0; i < d; i++)
                q[o] += (double)h[t * d + i] * w->mem_wq[i * qdim + o];
        }
        for (size_t ch = 0; ch < H * 2; ch++) {   /* LayerNorm of each k_dim query */
            double mean = 0, var = 0, *x = q + ch * kd;
            for (size_t i = 0; i < kd; i++)
                mean += x[i] / kd;
            for (size_t i = 0; i < kd; i++)
                var += (x[i] - mean) * (x[i] - mean) / kd;
            for (size_t i = 0; i < kd; i++)
                x[i] = (x[i] - mean) / sqrt(var + c->norm_eps);
        }
        memset(pooled, 0, G * vd * sizeof *pooled);
        for (size_t hd = 0; hd < H; hd++) {
            const double *qr = q + hd * 2 * kd, *qc = qr + kd;
            for (size_t a = 0; a < r; a++)
                for (size_t i = 0; i < N; i++) {
                    const float *kr = w->mem_keys_row + ((hd * r + a) * N + i) * kd;
                    const float *kc = w->mem_keys_col + ((hd * r + a) * N + i) * kd;
                    srow[a * N + i] = scol[a * N + i] = 0;
                    for (size_t e = 0; e < kd; e++) {
                        srow[a * N + i] += qr[e] * kr[e];
                        scol[a * N + i] += qc[e] * kc[e];
                    }
                }
            const float *core = w->mem_core + hd * r * r;
            for (size_t i = 0; i < N; i++)
                for (size_t j = 0; j < N; j++) {
                    grid[i * N + j] = 0;
                    for (size_t a = 0; a < r; a++)
                        for (size_t b = 0; b < r; b++)
                            grid[i * N + j] += srow[a * N + i] * core[a * r + b] * scol[b * N + j];
                }
            size_t best[64];
            double score[64], sum = 0;
            for (size_t k = 0; k < K; k++) {   /* selection: best first, ties to lower id */
                size_t arg = 0;
                double top = -INFINITY;
                for (size_t a = 0; a < N * N; a++)
                    if (grid[a] > top) {
                        top = grid[a];
                        arg = a;
                    }
                best[k] = arg;
                score[k] = top;
                grid[arg] = -INFINITY;
            }
            for (size_t k = 0; k < K; k++)
                sum += exp(score[k] - score[0]);
            for (size_t k = 0; k < K; k++) {
                double wk = mc->softmax ? exp(score[k] - score[0]) / sum : score[k];
                const float *v = values + (best[k] / G) * vd;
                for (size_t e = 0; e < vd; e++)
                    pooled[(best[k] % G) * vd + e] += wk * v[e];
            }
        }
        for (size_t o = 0; o < d; o++) {
            out[t * d + o] = 0;
            for (size_t g = 0; g < G; g++)
                for (size_t e = 0; e < vd; e++)
                    out[t * d + o] += pooled[g * vd + e] * w->mem_ive[(g * vd + e) * d + o];
        }
    }
    free(q);
    free(grid);
    free(pooled);
    free(srow);
    free(scol);
}

static void test_memlayer_matches_scalar(void **state)
{
    (void)state;
    us_err err = {0};
    us_model_config cfg;
    assert_int_equal(us_model_config_preset(&cfg, "tiny", &err), US_OK);
    cfg.memory.candidates = cfg.memory.n_keys;   /* exhaustive preselection: exact top-k */
    assert_int_equal(us_model_config_validate(&cfg, "cfg", &err), US_OK);
    assert_true(cfg.memory.knn <= 64 && cfg.memory.softmax && cfg.memory.query_norm);
    us_model m;
    assert_int_equal(us_model_alloc(&m, &cfg, &err), US_OK);
    us_model_init_random(&m, 11);
    const uint64_t rows = us_model_config_table_rows(&cfg);
    const uint32_t vd = cfg.memory.v_dim;
    float *values = malloc(rows * vd * sizeof(float));
    for (uint64_t r = 0; r < rows; r++)
        us_synth_row_f32(values + r * vd, 3, 0, r, vd);
    const uint8_t *blocks[1] = { (const uint8_t *)values };
    us_rows_view view = { .dtype = US_DTYPE_F32, .dim = vd, .block_bits = 12,
                          .row_stride_bytes = vd * 4, .rows = rows, .n_blocks = 1,
                          .blocks = blocks };
    us_memory_local local = { .tables = &view, .n_tables = 1, .n_threads = 1 };
    us_memory_backend be;
    us_memory_local_backend(&be, &local);
    assert_int_equal(us_model_set_backend(&m, &be, &err), US_OK);

    const int layer = us_model_config_memory_layer_index(&cfg, 0);
    assert_true(layer >= 0);
    const size_t d = cfg.d_model;
    us_workspace ws;
    assert_int_equal(us_workspace_init(&ws, &cfg, T_TOKENS, &err), US_OK);
    for (size_t i = 0; i < T_TOKENS * d; i++)
        ws.h[i] = (float)sin(0.37 * (double)i + 0.1) + 0.05f * (float)(i % 7);
    float out[T_TOKENS * 64];
    double want[T_TOKENS * 64];
    assert_true(d <= 64);
    for (size_t i = 0; i < T_TOKENS * d; i++)
        out[i] = 0.5f;   /* the layer adds to what is there */
    assert_int_equal(us_memlayer_begin(&m, (uint32_t)layer, &ws, T_TOKENS, &err), US_OK);
    assert_int_equal(us_memlayer_end(&m, (uint32_t)layer, &ws, T_TOKENS, out, &err), US_OK);
    memlayer_ref(&m, (uint32_t)layer, ws.h, values, T_TOKENS, want);
    double max_abs = 0, max_err = 0;
    for (size_t i = 0; i < T_TOKENS * d; i++) {
        double diff = fabs((out[i] - 0.5) - want[i]);
        max_err = diff > max_err ? diff : max_err;
        max_abs = fabs(want[i]) > max_abs ? fabs(want[i]) : max_abs;
    }
    assert_true(max_abs > 1e-3);   /* the layer produced something to compare */
    if (max_err > 1e-4 * (1 + max_abs))
        fail_msg("memlayer differs from the scalar layer by %g (max |out| %g)", max_err,
                 max_abs);
    us_workspace_free(&ws);
    us_model_free(&m);
    free(values);
}

/* No backend attached: refused, naming the table, before any scoring. */
static void test_memlayer_needs_backend(void **state)
{
    (void)state;
    us_err err = {0};
    us_model_config cfg;
    assert_int_equal(us_model_config_preset(&cfg, "tiny", &err), US_OK);
    us_model m;
    assert_int_equal(us_model_alloc(&m, &cfg, &err), US_OK);
    us_workspace ws;
    assert_int_equal(us_workspace_init(&ws, &cfg, 1, &err), US_OK);
    const int layer = us_model_config_memory_layer_index(&cfg, 0);
    assert_int_equal(us_memlayer_begin(&m, (uint32_t)layer, &ws, 1, &err), US_EINVAL);
    assert_string_equal(err.msg, "memory table 0: no value backend attached");
    us_workspace_free(&ws);
    us_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memlayer_matches_scalar),
        cmocka_unit_test(test_memlayer_needs_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
