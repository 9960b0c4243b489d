/* memlayer.c — UltraMem memory layer: TDQKR scoring, IVE lookup, projection. */
#include "coordinator/model/memlayer.h"

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
        .n_cores = 1, .k_pre = (int)mc->candidates, .k = (int)mc->knn,
        .mode = US_PK_TUCKER,
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
    void     *pk;       /* scoring workspace */
    size_t    pk_bytes;
    char     *tables;   /* first per-table slice */
    size_t    slice_bytes, total;
} mem_layout;

typedef struct table_slice {
    float    *weights;  /* [T][Hm*knn] */
    uint64_t *rows;     /* [T][Hm*knn] physical rows */
    uint8_t  *groups;   /* [T][Hm*knn] */
    float    *pooled;   /* [T][G][v_dim] */
} table_slice;

static table_slice slice_at(const us_model_config *c, size_t T, char *base)
{
    const us_memory_config *mc = &c->memory;
    const size_t sel = (size_t)mc->heads * mc->knn;
    table_slice ts;
    size_t off = 0;
    ts.weights = (float *)(base + off);
    off += align64(T * sel * sizeof(float));
    ts.rows = (uint64_t *)(base + off);
    off += align64(T * sel * sizeof(uint64_t));
    ts.groups = (uint8_t *)(base + off);
    off += align64(T * sel);
    ts.pooled = (float *)(base + off);
    return ts;
}

static size_t slice_bytes(const us_model_config *c, size_t T)
{
    const us_memory_config *mc = &c->memory;
    const size_t sel = (size_t)mc->heads * mc->knn;
    return align64(T * sel * sizeof(float)) + align64(T * sel * sizeof(uint64_t)) +
           align64(T * sel) + align64(T * mc->ive_groups * mc->v_dim * sizeof(float));
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

int us_memlayer_begin(const us_model *m, uint32_t layer, us_workspace *ws, size_t T,
                      us_err *err)
{
    const us_model_config *c = &m->cfg;
    const us_memory_config *mc = &c->memory;
    const us_layer_weights *w = &m->layers[layer];
    const int table = m->table_of_layer[layer];
    const size_t d = c->d_model, qdim = (size_t)mc->heads * 2 * mc->k_dim;
    const size_t sel = (size_t)mc->heads * mc->knn, G = mc->ive_groups;
    if (m->backend.lookup == NULL && m->backend.lookup_begin == NULL)
        return us_err_set(err, US_EINVAL, "memory table %d: no value backend attached", table);
    /* Laid out for max_tokens; a smaller step uses the same slices. */
    mem_layout lo = layout(c, ws->max_tokens, ws->mem_ws);
    table_slice ts = slice_at(c, ws->max_tokens, lo.tables + (size_t)table * lo.slice_bytes);
    us_matmul_forward(lo.q, ws->h, w->mem_wq, T, d, qdim, 0.0f);
    if (mc->query_norm)   /* each head's row and column query: rows of k_dim */
        us_layernorm_forward(lo.q, lo.q, NULL, NULL, T * mc->heads * 2, mc->k_dim,
                             c->norm_eps);
    us_pk_shape shape = pk_shape(c, T);
    /* A decode step of a few tokens costs less than waking OpenMP threads
     * (measured: 2 threads on the shared 2-core box were ~10x slower). */
    int threads = T < 64 ? 1 : 0;
    int rc = us_pk_score(lo.addr, ts.weights, lo.q, w->mem_keys_row, w->mem_keys_col,
                         w->mem_core, &shape, lo.pk, lo.pk_bytes, threads, err);
    if (rc != US_OK)
        return us_err_prefix(err, "memory table %d: scoring", table);
    for (size_t i = 0; i < T * sel; i++) {
        ts.rows[i] = lo.addr[i] / G;
        ts.groups[i] = (uint8_t)(lo.addr[i] % G);
    }
    if (m->backend.lookup_begin != NULL)
        return m->backend.lookup_begin(m->backend.ctx, table, ts.rows, ts.weights, ts.groups,
                                       T, sel, (int)G, err);
    return m->backend.lookup(m->backend.ctx, table, ts.rows, ts.weights, ts.groups, T, sel,
                             (int)G, ts.pooled, err);
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
    if (out_add != NULL)
        us_ive_project(out_add, ts.pooled, m->layers[layer].mem_ive, T, mc->ive_groups,
                       mc->v_dim, c->d_model, 1);
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
