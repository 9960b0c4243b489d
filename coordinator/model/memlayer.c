/* memlayer.c — UltraMem memory layer: TDQKR/PKM scoring, IVE lookup, projection. */
#include "coordinator/model/memlayer.h"

#include <string.h>

#include "kernels/activation.h"
#include "kernels/ive.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"
#include "kernels/score.h"

static us_pk_shape pk_shape(const us_model_config *c, size_t T)
{
    const us_memory_config *mc = &c->memory;
    us_pk_shape s = {
        .n_tokens = (int)T, .n_heads = (int)mc->heads, .d_key = (int)mc->k_dim,
        .n_rows = (int)mc->n_keys, .n_cols = (int)mc->n_keys, .rank = (int)mc->tucker_rank,
        .n_cores = (int)mc->tucker_cores, .k_pre = (int)mc->candidates, .k = (int)mc->knn,
        .mode = mc->score == US_MEM_SCORE_PKM ? US_PK_SUM : US_PK_TUCKER,
        .activation = mc->softmax ? US_PK_ACT_SOFTMAX : US_PK_ACT_NONE,
    };
    return s;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Layout of the memory-layer workspace: shared scoring buffers, then one
 * lookup slice per memory table (a lookup may be in flight until its
 * output is due `skip` layers later, while other tables are scored). */
typedef struct mem_layout {
    float    *q;        /* [T][Hm*2*kd] */
    uint64_t *addr;     /* [T][Hm*knn] virtual addresses */
    float    *scores;   /* [m][T][Hm*knn] per core (m = tucker_cores) */
    float    *y;        /* [T][d] IVE output before the gate (output_gate only) */
    void     *pk;       /* scoring workspace */
    size_t    pk_bytes;
    char     *tables;   /* first per-table slice */
    size_t    slice_bytes, total;
} mem_layout;

/* The lookup of one table: P = us_model_config_lookup_pairs per token,
 * G' = us_model_config_lookup_groups (group g*m + c: IVE group g, core c). */
typedef struct table_slice {
    float    *weights;  /* [T][P] */
    uint64_t *rows;     /* [T][P] physical rows */
    uint8_t  *groups;   /* [T][P] */
    float    *pooled;   /* [T][G'][v_dim]; compacted to [T][G][v_dim] at the end */
    float    *gate;     /* [T][d] h Wg (output_gate only) */
} table_slice;

static table_slice slice_at(const us_model_config *c, size_t T, char *base)
{
    const size_t P = us_model_config_lookup_pairs(c);
    const size_t G = us_model_config_lookup_groups(c);
    table_slice ts;
    size_t off = 0;
    ts.weights = (float *)(base + off);
    off += align64(T * P * sizeof(float));
    ts.rows = (uint64_t *)(base + off);
    off += align64(T * P * sizeof(uint64_t));
    ts.groups = (uint8_t *)(base + off);
    off += align64(T * P);
    ts.pooled = (float *)(base + off);
    off += align64(T * G * c->memory.v_dim * sizeof(float));
    ts.gate = (float *)(base + off);
    return ts;
}

static size_t slice_bytes(const us_model_config *c, size_t T)
{
    const size_t P = us_model_config_lookup_pairs(c);
    const size_t G = us_model_config_lookup_groups(c);
    const size_t gate = c->memory.output_gate ? T * c->d_model : 0;
    return align64(T * P * sizeof(float)) + align64(T * P * sizeof(uint64_t)) +
           align64(T * P) + align64(T * G * c->memory.v_dim * sizeof(float)) +
           align64(gate * sizeof(float));
}

static mem_layout layout(const us_model_config *c, size_t T, void *base)
{
    const us_memory_config *mc = &c->memory;
    const size_t sel = (size_t)mc->heads * mc->knn;
    mem_layout lo = {0};
    char *p = base;
    size_t off = 0;
    lo.q = (float *)(p ? p + off : NULL);
    off += align64(T * mc->heads * 2 * mc->k_dim * sizeof(float));
    lo.addr = (uint64_t *)(p ? p + off : NULL);
    off += align64(T * sel * sizeof(uint64_t));
    lo.scores = (float *)(p ? p + off : NULL);
    off += align64(mc->tucker_cores * T * sel * sizeof(float));
    lo.y = (float *)(p ? p + off : NULL);
    off += align64((mc->output_gate ? T * c->d_model : 0) * sizeof(float));
    us_pk_shape s = pk_shape(c, T ? T : 1);
    lo.pk_bytes = us_pk_workspace_bytes(&s, 0);
    lo.pk = p ? p + off : NULL;
    off += align64(lo.pk_bytes);
    lo.tables = p ? p + off : NULL;
    lo.slice_bytes = slice_bytes(c, T);
    off += us_model_config_memory_layers(c) * lo.slice_bytes;
    lo.total = off;
    return lo;
}

size_t us_memlayer_workspace_bytes(const us_model_config *cfg, size_t max_tokens)
{
    if (us_model_config_memory_layers(cfg) == 0)
        return 0;
    return layout(cfg, max_tokens, NULL).total;
}

/* Queries of the step: q = h Wq, then each head's row and column query (rows
 * of k_dim) normalised as memory.query_norm says. */
static void memory_queries(const us_model_config *c, const us_layer_weights *w,
                           const float *h, float *q, size_t T)
{
    const us_memory_config *mc = &c->memory;
    const size_t qdim = (size_t)mc->heads * 2 * mc->k_dim;
    us_matmul_forward(q, h, w->mem_wq, T, c->d_model, qdim, 0.0f);
    if (mc->query_norm == US_QNORM_LAYERNORM)
        us_layernorm_forward(q, q, NULL, NULL, T * mc->heads * 2, mc->k_dim, c->norm_eps);
    else if (mc->query_norm == US_QNORM_L2)
        us_l2norm_forward(q, q, T * mc->heads * 2, mc->k_dim, 1e-12f);
}

/* The scorer's selections as lookup pairs: per token, core c's block of
 * heads*knn pairs reads the same rows with core c's weights into group
 * g*m + c (m = tucker_cores; m = 1 is the plain layout). */
static void expand_pairs(const us_model_config *c, const mem_layout *lo, table_slice *ts,
                         size_t T)
{
    const us_memory_config *mc = &c->memory;
    const size_t sel = (size_t)mc->heads * mc->knn, G = mc->ive_groups, m = mc->tucker_cores;
    for (size_t t = 0; t < T; t++)
        for (size_t core = 0; core < m; core++)
            for (size_t s = 0; s < sel; s++) {
                const uint64_t a = lo->addr[t * sel + s];
                const size_t i = (t * m + core) * sel + s;
                ts->rows[i] = a / G;
                ts->groups[i] = (uint8_t)((a % G) * m + core);
                ts->weights[i] = lo->scores[(core * T + t) * sel + s];
            }
}

int us_memlayer_begin(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                      us_err *err)
{
    const us_model_config *c = &m->cfg;
    const us_layer_weights *w = &m->layers[layer];
    const int table = m->table_of_layer[layer];
    if (m->backend.lookup == NULL && m->backend.lookup_begin == NULL)
        return us_err_set(err, US_EINVAL, "memory table %d: no value backend attached", table);
    /* Laid out for max_tokens; a smaller step uses the same slices. */
    mem_layout lo = layout(c, ws->max_tokens, ws->mem_ws);
    table_slice ts = slice_at(c, ws->max_tokens, lo.tables + (size_t)table * lo.slice_bytes);
    memory_queries(c, w, ws->h, lo.q, T);
    us_pk_shape shape = pk_shape(c, T);
    /* A decode step of a few tokens costs less than waking OpenMP threads
     * (measured: 2 threads on the shared 2-core box were ~10x slower). */
    int threads = T < 64 ? 1 : 0;
    int rc = us_pk_score(lo.addr, lo.scores, lo.q, w->mem_keys_row, w->mem_keys_col,
                         w->mem_core, &shape, lo.pk, lo.pk_bytes, threads, err);
    if (rc != US_OK)
        return us_err_prefix(err, "memory table %d: scoring", table);
    expand_pairs(c, &lo, &ts, T);
    if (c->memory.output_gate)   /* h is overwritten before the output is due */
        us_matmul_forward(ts.gate, ws->h, w->mem_gate, T, c->d_model, c->d_model, 0.0f);
    const size_t P = us_model_config_lookup_pairs(c);
    const int G = (int)us_model_config_lookup_groups(c);
    if (m->backend.lookup_begin != NULL)
        return m->backend.lookup_begin(m->backend.ctx, table, ts.rows, ts.weights, ts.groups,
                                       T, P, G, err);
    return m->backend.lookup(m->backend.ctx, table, ts.rows, ts.weights, ts.groups, T, P, G,
                             ts.pooled, err);
}

/* MCS: group g's pooled vector is slice c of lookup group g*m + c for each
 * core c; compacted in place to [T][G][v_dim] (destinations never run
 * ahead of their sources, so a forward walk is safe). */
static void compact_cores(const us_memory_config *mc, float *pooled, size_t T)
{
    const size_t m = mc->tucker_cores, G = mc->ive_groups, v = mc->v_dim, s = v / m;
    if (m == 1)
        return;
    for (size_t t = 0; t < T; t++)
        for (size_t g = 0; g < G; g++)
            for (size_t core = 0; core < m; core++)
                memmove(pooled + (t * G + g) * v + core * s,
                        pooled + ((t * G + g) * m + core) * v + core * s, s * sizeof(float));
}

int us_memlayer_end(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                    float *out_add, us_err *err)
{
    const us_model_config *c = &m->cfg;
    const us_memory_config *mc = &c->memory;
    const int table = m->table_of_layer[layer];
    mem_layout lo = layout(c, ws->max_tokens, ws->mem_ws);
    table_slice ts = slice_at(c, ws->max_tokens, lo.tables + (size_t)table * lo.slice_bytes);
    if (m->backend.lookup_begin != NULL) {
        int rc = m->backend.lookup_end(m->backend.ctx, table, ts.pooled, err);
        if (rc != US_OK)
            return rc;
    }
    if (out_add == NULL)
        return US_OK;
    const us_layer_weights *w = &m->layers[layer];
    const size_t d = c->d_model;
    compact_cores(mc, ts.pooled, T);
    if (!mc->output_gate) {
        us_ive_project(out_add, ts.pooled, w->mem_ive, T, mc->ive_groups, mc->v_dim, d, 1);
        return US_OK;
    }
    /* Memory+: out += (y * silu(h Wg)) Wout */
    us_ive_project(lo.y, ts.pooled, w->mem_ive, T, mc->ive_groups, mc->v_dim, d, 0);
    us_swiglu(lo.y, ts.gate, lo.y, T * d);
    us_matmul_forward(out_add, lo.y, w->mem_out, T, d, d, 1.0f);
    return US_OK;
}

void us_memlayer_selection(const us_model *m, uint32_t layer, const us_workspace *ws,
                           const uint64_t **rows, const float **weights, const uint8_t **groups)
{
    const us_model_config *c = &m->cfg;
    mem_layout lo = layout(c, ws->max_tokens, ws->mem_ws);
    table_slice ts = slice_at(c, ws->max_tokens,
                              lo.tables + (size_t)m->table_of_layer[layer] * lo.slice_bytes);
    *rows = ts.rows;
    *weights = ts.weights;
    *groups = ts.groups;
}
