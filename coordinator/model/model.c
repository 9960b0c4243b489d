/* model.c — parameters, sequence state, workspace and the forward step: see model.h. */
#include "coordinator/model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/model/memlayer.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/ffn.h"
#include "kernels/infini.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/topk.h"

/* ---- parameter table ---- */

typedef struct param_list {
    us_param_desc *out;
    size_t cap, n;
    uint64_t total;
} param_list;

static void add_param_shape(param_list *pl, float init_std, int ndim, const uint64_t *shape,
                            const char *fmt, int layer)
{
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= shape[i];
    if (pl->n < pl->cap) {
        us_param_desc *p = &pl->out[pl->n];
        snprintf(p->name, sizeof p->name, fmt, layer);
        p->ndim = ndim;
        memset(p->shape, 0, sizeof p->shape);
        memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
        p->count = count;
        p->offset = pl->total;
        p->init_std = init_std;
    }
    pl->n++;
    pl->total += count;
}

static void add_param(param_list *pl, float init_std, int ndim, uint64_t d0, uint64_t d1,
                      uint64_t d2, const char *fmt, int layer)
{
    const uint64_t shape[3] = { d0, d1, d2 };
    add_param_shape(pl, init_std, ndim, shape, fmt, layer);
}

/* A memory layer's weights (model.h): no core for pkm; the core is
 * [Hm][m][r][r] with m = tucker_cores; the output gate adds .gate, .out. */
static void add_memory_params(param_list *pl, const us_model_config *c, int L)
{
    const us_memory_config *m = &c->memory;
    const uint64_t d = c->d_model, Hm = m->heads, r = m->tucker_rank;
    const float s_d = 1.0f / sqrtf((float)d);
    add_param(pl, s_d, 2, d, Hm * 2 * m->k_dim, 0, "layers.%d.mem.wq", L);
    add_param(pl, 1.0f / sqrtf((float)m->k_dim), 3, Hm * r, m->n_keys, m->k_dim,
              "layers.%d.mem.keys_row", L);
    add_param(pl, 1.0f / sqrtf((float)m->k_dim), 3, Hm * r, m->n_keys, m->k_dim,
              "layers.%d.mem.keys_col", L);
    if (m->score == US_MEM_SCORE_TDQKR) {
        const uint64_t core[4] = { Hm, m->tucker_cores, r, r };
        add_param_shape(pl, 1.0f, 4, core, "layers.%d.mem.core", L);
    }
    add_param(pl, 1.0f / sqrtf((float)m->v_dim), 3, m->ive_groups, m->v_dim, d,
              "layers.%d.mem.ive", L);
    if (m->output_gate) {
        add_param(pl, s_d, 2, d, d, 0, "layers.%d.mem.gate", L);
        add_param(pl, s_d, 2, d, d, 0, "layers.%d.mem.out", L);
    }
}

size_t us_model_params(const us_model_config *c, us_param_desc *out, size_t cap,
                       uint64_t *total)
{
    param_list pl = { out, cap, 0, 0 };
    const uint64_t d = c->d_model, V = c->vocab_size, hd = (uint64_t)c->n_heads * c->head_dim;
    const float one = -1.0f;   /* constant 1: norm gains */
    const float s_d = 1.0f / sqrtf((float)d);
    add_param(&pl, 1.0f, 2, V, d, 0, "tok_emb", 0);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        int L = (int)l;
        add_param(&pl, one, 1, d, 0, 0, "layers.%d.attn_norm", L);
        add_param(&pl, s_d, 2, d, hd, 0, "layers.%d.attn.wq", L);
        add_param(&pl, s_d, 2, d, hd, 0, "layers.%d.attn.wk", L);
        add_param(&pl, s_d, 2, d, hd, 0, "layers.%d.attn.wv", L);
        add_param(&pl, 1.0f / sqrtf((float)hd), 2, hd, d, 0, "layers.%d.attn.wo", L);
        add_param(&pl, 1.0f, 1, c->n_heads, 0, 0, "layers.%d.attn.beta", L);
        add_param(&pl, one, 1, d, 0, 0, "layers.%d.ffn_norm", L);
        switch (c->layers[l]) {
        case US_LAYER_DENSE: {
            uint64_t f = c->ffn_hidden;
            add_param(&pl, s_d, 2, d, f, 0, "layers.%d.ffn.w1", L);
            add_param(&pl, s_d, 2, d, f, 0, "layers.%d.ffn.w3", L);
            add_param(&pl, 1.0f / sqrtf((float)f), 2, f, d, 0, "layers.%d.ffn.w2", L);
            break;
        }
        case US_LAYER_MOE: {
            uint64_t E = c->moe_experts, f = c->moe_hidden;
            add_param(&pl, s_d, 2, d, E, 0, "layers.%d.moe.router", L);
            add_param(&pl, s_d, 3, E, d, f, "layers.%d.moe.w1", L);
            add_param(&pl, s_d, 3, E, d, f, "layers.%d.moe.w3", L);
            add_param(&pl, 1.0f / sqrtf((float)f), 3, E, f, d, "layers.%d.moe.w2", L);
            break;
        }
        case US_LAYER_MEMORY:
            add_memory_params(&pl, c, L);
            break;
        }
    }
    add_param(&pl, one, 1, d, 0, 0, "norm_f", 0);
    add_param(&pl, s_d, 2, d, V, 0, "lm_head", 0);
    *total = pl.total;
    return pl.n;
}

float *us_model_param(us_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_descs; i++)
        if (strcmp(m->descs[i].name, name) == 0)
            return m->params + m->descs[i].offset;
    return NULL;
}

static const float *param_at(us_model *m, const char *fmt, uint32_t layer)
{
    char name[US_PARAM_NAME_BYTES];
    snprintf(name, sizeof name, fmt, (int)layer);
    return us_model_param(m, name);
}

int us_model_alloc(us_model *m, const us_model_config *cfg, us_err *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    uint64_t total = 0;
    size_t n = us_model_params(cfg, NULL, 0, &total);
    m->descs = calloc(n, sizeof *m->descs);
    m->params = calloc(total ? total : 1, sizeof *m->params);
    if (m->descs == NULL || m->params == NULL) {
        us_model_free(m);
        return us_err_set(err, US_ENOMEM, "model: cannot allocate %llu parameters",
                          (unsigned long long)total);
    }
    m->n_descs = us_model_params(cfg, m->descs, n, &m->n_params);
    m->tok_emb = us_model_param(m, "tok_emb");
    m->norm_f = us_model_param(m, "norm_f");
    m->lm_head = us_model_param(m, "lm_head");
    int table = 0;
    for (uint32_t l = 0; l < cfg->n_layers; l++) {
        us_layer_weights *w = &m->layers[l];
        w->attn_norm = param_at(m, "layers.%d.attn_norm", l);
        w->wq = param_at(m, "layers.%d.attn.wq", l);
        w->wk = param_at(m, "layers.%d.attn.wk", l);
        w->wv = param_at(m, "layers.%d.attn.wv", l);
        w->wo = param_at(m, "layers.%d.attn.wo", l);
        w->beta = param_at(m, "layers.%d.attn.beta", l);
        w->ffn_norm = param_at(m, "layers.%d.ffn_norm", l);
        m->table_of_layer[l] = -1;
        if (cfg->layers[l] == US_LAYER_DENSE) {
            w->w1 = param_at(m, "layers.%d.ffn.w1", l);
            w->w3 = param_at(m, "layers.%d.ffn.w3", l);
            w->w2 = param_at(m, "layers.%d.ffn.w2", l);
        } else if (cfg->layers[l] == US_LAYER_MOE) {
            w->router = param_at(m, "layers.%d.moe.router", l);
            w->w1 = param_at(m, "layers.%d.moe.w1", l);
            w->w3 = param_at(m, "layers.%d.moe.w3", l);
            w->w2 = param_at(m, "layers.%d.moe.w2", l);
        } else {
            w->mem_wq = param_at(m, "layers.%d.mem.wq", l);
            w->mem_keys_row = param_at(m, "layers.%d.mem.keys_row", l);
            w->mem_keys_col = param_at(m, "layers.%d.mem.keys_col", l);
            w->mem_core = param_at(m, "layers.%d.mem.core", l);
            w->mem_ive = param_at(m, "layers.%d.mem.ive", l);
            w->mem_gate = param_at(m, "layers.%d.mem.gate", l);   /* NULL without gate */
            w->mem_out = param_at(m, "layers.%d.mem.out", l);
            m->table_of_layer[l] = table++;
        }
    }
    return US_OK;
}

void us_model_free(us_model *m)
{
    free(m->params);
    free(m->descs);
    m->params = NULL;
    m->descs = NULL;
}

int us_model_set_backend(us_model *m, const us_memory_backend *backend, us_err *err)
{
    uint32_t n_tables = us_model_config_memory_layers(&m->cfg);
    uint64_t want_rows = us_model_config_table_rows(&m->cfg);
    for (uint32_t t = 0; t < n_tables; t++) {
        uint64_t rows = 0;
        uint32_t dim = 0;
        int rc = backend->table_info(backend->ctx, (int)t, &rows, &dim, err);
        if (rc != US_OK)
            return rc;
        if (rows != want_rows || dim != m->cfg.memory.v_dim)
            return us_err_set(err, US_EINVAL, "memory table %u (layer %d): store has %llu "
                              "rows x %u, model wants %llu x %u", t,
                              us_model_config_memory_layer_index(&m->cfg, t),
                              (unsigned long long)rows, dim, (unsigned long long)want_rows,
                              m->cfg.memory.v_dim);
    }
    m->backend = *backend;
    return US_OK;
}

/* ---- sequence state ---- */

/* Rows of rotated keys kept per layer: the segment's, with RoPE only. */
static size_t rope_cache_rows(const us_model_config *c)
{
    return c->rope_theta > 0.0f ? c->segment_len : 0;
}

size_t us_seq_state_floats(const us_model_config *c)
{
    size_t hd = (size_t)c->n_heads * c->head_dim;
    return c->n_layers * ((2 * (size_t)c->segment_len + rope_cache_rows(c)) * hd +
                          hd * c->head_dim + hd);
}

int us_seq_state_init(us_seq_state *s, const us_model_config *c, us_err *err)
{
    memset(s, 0, sizeof *s);
    size_t hd = (size_t)c->n_heads * c->head_dim;
    s->block = malloc(us_seq_state_floats(c) * sizeof(float));
    if (s->block == NULL)
        return us_err_set(err, US_ENOMEM, "sequence state: cannot allocate %zu floats",
                          us_seq_state_floats(c));
    s->k_cache = s->block;
    s->v_cache = s->k_cache + c->n_layers * (size_t)c->segment_len * hd;
    s->mem = s->v_cache + c->n_layers * (size_t)c->segment_len * hd;
    s->mem_norm = s->mem + c->n_layers * hd * c->head_dim;
    s->kr_cache = rope_cache_rows(c) ? s->mem_norm + c->n_layers * hd : NULL;
    us_seq_state_reset(s, c);
    return US_OK;
}

void us_seq_state_reset(us_seq_state *s, const us_model_config *c)
{
    s->tokens_seen = 0;
    s->seg_fill = 0;
    /* The caches are written before they are read; only M and z must start at 0. */
    size_t hd = (size_t)c->n_heads * c->head_dim;
    memset(s->mem, 0, c->n_layers * (hd * c->head_dim + hd) * sizeof(float));
}

void us_seq_state_free(us_seq_state *s)
{
    free(s->block);
    memset(s, 0, sizeof *s);
}

/* ---- workspace ---- */

int us_workspace_init(us_workspace *ws, const us_model_config *c, size_t max_tokens,
                      us_err *err)
{
    memset(ws, 0, sizeof *ws);
    const size_t T = max_tokens, d = c->d_model, hd = (size_t)c->n_heads * c->head_dim;
    const size_t L = c->segment_len, E = c->moe_experts, K = c->moe_top_k;
    const size_t hid = c->ffn_hidden > c->moe_hidden ? c->ffn_hidden : c->moe_hidden;
    /* attention (max(tokens, heads) x L), Infini update (L x 2 head_dim) */
    size_t scratch = L * (L > 2 * c->head_dim ? L : 2 * c->head_dim);
    if (scratch < L * c->n_heads)
        scratch = L * c->n_heads;
    size_t mem_bytes = us_memlayer_workspace_bytes(c, T);
    float **f[] = { &ws->x, &ws->h, &ws->q, &ws->k, &ws->v, &ws->a_dot, &ws->a_mem, &ws->att,
                    &ws->hid1, &ws->hid2, &ws->moe_in, &ws->moe_out, &ws->router, &ws->moe_w,
                    &ws->scratch, &ws->q_rot };
    size_t n[] = { T * d, T * d, T * hd, T * hd, T * hd, T * hd, T * hd, T * hd,
                   T * hid, T * hid, T * d, T * d, T * E, T * K, scratch,
                   c->rope_theta > 0.0f ? T * hd : 0 };
    size_t total = 0;
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++)
        total += (n[i] + 15) & ~(size_t)15;   /* 64-byte aligned slices */
    mem_bytes = (mem_bytes + 63) & ~(size_t)63;
    size_t bytes = mem_bytes + total * sizeof(float) + 2 * T * K * sizeof(uint32_t);
    ws->block = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (ws->block == NULL)
        return us_err_set(err, US_ENOMEM, "workspace: cannot allocate %zu bytes for %zu tokens",
                          bytes, T);
    ws->mem_ws = ws->block;
    ws->mem_ws_bytes = mem_bytes;
    float *p = (float *)((char *)ws->block + mem_bytes);
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        *f[i] = p;
        p += (n[i] + 15) & ~(size_t)15;
    }
    uint32_t *u = (uint32_t *)p;
    ws->moe_e = u;
    ws->moe_tok = u + T * K;
    ws->max_tokens = T;
    ws->bytes = bytes;
    return US_OK;
}

void us_workspace_free(us_workspace *ws)
{
    free(ws->block);
    memset(ws, 0, sizeof *ws);
}

/* ---- forward ---- */

/* Top-k of E experts per token; weights = softmax over the selected logits
 * (renormalised among the chosen experts). Experts run in order 0..E-1, each
 * on the tokens routed to it, and add their weighted outputs to x. */
static int moe_forward(const us_model *m, const us_layer_weights *w, us_workspace *ws,
                       size_t T, us_err *err)
{
    const us_model_config *c = &m->cfg;
    const size_t d = c->d_model, E = c->moe_experts, K = c->moe_top_k, f = c->moe_hidden;
    us_matmul_forward(ws->router, ws->h, w->router, T, d, E, 0.0f);
    int rc = us_topk_rows(ws->moe_e, ws->moe_w, ws->router, T, E, E, K, 1, err);
    if (rc != US_OK)
        return us_err_prefix(err, "moe router");
    us_softmax_rows(ws->moe_w, ws->moe_w, T, K);
    for (size_t e = 0; e < E; e++) {
        size_t n = us_moe_dispatch(ws->moe_in, ws->moe_tok, ws->h, ws->moe_e, T, K, d,
                                   (uint32_t)e);
        if (n == 0)
            continue;
        memset(ws->moe_out, 0, n * d * sizeof(float));
        us_swiglu_ffn_forward(ws->moe_out, ws->moe_in, w->w1 + e * d * f, w->w3 + e * d * f,
                              w->w2 + e * f * d, ws->hid1, ws->hid2, n, d, f);
        us_moe_combine(ws->x, ws->moe_out, ws->moe_tok, ws->moe_w, n, K, d);
    }
    return US_OK;
}

/* Layer whose residual stream receives memory layer l's output. */
static uint32_t memory_target(const us_model_config *c, uint32_t l)
{
    return l + c->memory.skip < c->n_layers ? l + c->memory.skip : c->n_layers - 1;
}

/* Infini-attention of one item's tokens (q, k, v: its rows of the step),
 * segment piece by segment piece: each piece attends to its segment's cache
 * and retrieves from M, z as they were before its segment; a piece that
 * fills the segment then folds it into M, z. This walk is the only
 * sequential part of a long chunk (the paper's order per segment).
 * With RoPE the local attention reads rotated copies (queries in q_rot, keys
 * in the state's kr_cache, positions = index in the segment), while the
 * memory retrieves with the unrotated q and is updated from the unrotated
 * k_cache: a token's rotation depends only on its position, so prefill in
 * any chunks and decoding cache the same rotated keys. */
static void attention_item(const us_model *m, uint32_t l, us_workspace *ws, us_seq_state *s,
                           size_t t0, size_t n_tokens)
{
    const us_model_config *c = &m->cfg;
    const us_layer_weights *w = &m->layers[l];
    const size_t H = c->n_heads, dh = c->head_dim, hd = H * dh, L = c->segment_len;
    float *kc = s->k_cache + l * L * hd, *vc = s->v_cache + l * L * hd;
    float *M = s->mem + l * hd * dh, *z = s->mem_norm + l * hd;
    const bool rope = c->rope_theta > 0.0f;
    float *kc_dot = rope ? s->kr_cache + l * L * hd : kc;
    const float *q_dot = rope ? ws->q_rot : ws->q;
    size_t fill = s->seg_fill;
    for (size_t end = t0 + n_tokens; t0 < end;) {
        const size_t n = end - t0 < L - fill ? end - t0 : L - fill;
        const size_t off = t0 * hd;
        memcpy(kc + fill * hd, ws->k + off, n * hd * sizeof(float));
        memcpy(vc + fill * hd, ws->v + off, n * hd * sizeof(float));
        if (rope) {
            us_rope_forward(kc_dot + fill * hd, ws->k + off, n, H, dh, fill, c->rope_theta);
            us_rope_forward(ws->q_rot + off, ws->q + off, n, H, dh, fill, c->rope_theta);
        }
        /* Shapes hold by construction (n <= L - fill): cannot fail. */
        (void)us_causal_attention_forward(ws->a_dot + off, ws->scratch, q_dot + off, kc_dot,
                                          vc, n, fill + n, H, dh);
        us_infini_retrieve(ws->a_mem + off, ws->scratch, ws->q + off, M, z, n, H, dh, dh);
        us_infini_gate(ws->att + off, ws->a_mem + off, ws->a_dot + off, w->beta, n, H, dh);
        if (fill + n == L)   /* segment complete: fold it into the memory */
            us_infini_update(M, z, ws->scratch, kc, vc, L, H, dh, dh, c->infini_rule);
        fill = (fill + n) % L;
        t0 += n;
    }
}

/* Projections run over all T tokens of the step at once (matrix-matrix);
 * only the Infini-attention walks each item's segments in order. */
static void attention_layer(const us_model *m, uint32_t l, us_workspace *ws,
                            us_batch_item *items, size_t n_items, size_t T)
{
    const us_model_config *c = &m->cfg;
    const us_layer_weights *w = &m->layers[l];
    const size_t d = c->d_model, hd = (size_t)c->n_heads * c->head_dim;
    us_rmsnorm_forward(ws->h, ws->x, w->attn_norm, T, d, c->norm_eps);
    us_matmul_forward(ws->q, ws->h, w->wq, T, d, hd, 0.0f);
    us_matmul_forward(ws->k, ws->h, w->wk, T, d, hd, 0.0f);
    us_matmul_forward(ws->v, ws->h, w->wv, T, d, hd, 0.0f);
    size_t t0 = 0;
    for (size_t i = 0; i < n_items; i++) {
        attention_item(m, l, ws, items[i].state, t0, items[i].n_tokens);
        t0 += items[i].n_tokens;
    }
    us_matmul_forward(ws->x, ws->att, w->wo, T, hd, d, 1.0f);
}

/* The step's items against the contract (model.h); *T = their tokens. */
static int check_items(const us_model_config *c, const us_batch_item *items, size_t n_items,
                       size_t *T_out, us_err *err)
{
    const size_t V = c->vocab_size;
    size_t T = 0;
    for (size_t i = 0; i < n_items; i++) {
        const us_batch_item *it = &items[i];
        if (it->n_tokens == 0)
            return us_err_set(err, US_EINVAL, "batch item %zu: no tokens", i);
        for (size_t k = 0; k < i; k++)
            if (items[k].state == it->state)   /* its segments would interleave */
                return us_err_set(err, US_EINVAL, "batch items %zu and %zu: the same "
                                  "sequence state twice in one step", k, i);
        for (uint32_t j = 0; j < it->n_tokens; j++)
            if (it->tokens[j] < 0 || (uint32_t)it->tokens[j] >= V)
                return us_err_set(err, US_EINVAL, "batch item %zu: token %u is %d, outside "
                                  "[0, %zu)", i, j, (int)it->tokens[j], V);
        T += it->n_tokens;
    }
    *T_out = T;
    return US_OK;
}

int us_model_forward(const us_model *m, us_workspace *ws, us_batch_item *items,
                     size_t n_items, float *logits, bool last_only, us_err *err)
{
    const us_model_config *c = &m->cfg;
    const size_t d = c->d_model, V = c->vocab_size;
    size_t T = 0;
    int rc = check_items(c, items, n_items, &T, err);
    if (rc != US_OK)
        return rc;
    if (T > ws->max_tokens)
        return us_err_set(err, US_EINVAL, "batch of %zu tokens exceeds the workspace (%zu)",
                          T, ws->max_tokens);
    if (T == 0)
        return US_OK;
    size_t t = 0;
    for (size_t i = 0; i < n_items; i++)
        for (uint32_t j = 0; j < items[i].n_tokens; j++, t++)
            memcpy(ws->x + t * d, m->tok_emb + (size_t)items[i].tokens[j] * d,
                   d * sizeof(float));
    /* Memory lookups begun at layer l are ended (and their output added to
     * x) at their target layer, after its FFN slot: in between, an
     * asynchronous backend works while the other layers compute. */
    bool inflight[US_MODEL_MAX_LAYERS] = { false };
    for (uint32_t l = 0; l < c->n_layers && rc == US_OK; l++) {
        const us_layer_weights *w = &m->layers[l];
        attention_layer(m, l, ws, items, n_items, T);
        us_rmsnorm_forward(ws->h, ws->x, w->ffn_norm, T, d, c->norm_eps);
        switch (c->layers[l]) {
        case US_LAYER_DENSE:
            us_swiglu_ffn_forward(ws->x, ws->h, w->w1, w->w3, w->w2, ws->hid1, ws->hid2, T,
                                  d, c->ffn_hidden);
            break;
        case US_LAYER_MOE:
            rc = moe_forward(m, w, ws, T, err);
            break;
        case US_LAYER_MEMORY:
            rc = us_memlayer_begin(m, l, ws, T, err);
            inflight[l] = rc == US_OK;
            break;
        }
        for (uint32_t src = 0; src <= l && rc == US_OK; src++)
            if (inflight[src] && memory_target(c, src) == l) {
                inflight[src] = false;
                rc = us_memlayer_end(m, src, ws, T, ws->x, err);
            }
        if (rc != US_OK)
            us_err_prefix(err, "layer %u", l);
    }
    if (rc != US_OK) {
        /* Finish what was begun so a distributed backend's rounds stay
         * matched; the first error is the one reported. */
        for (uint32_t src = 0; src < c->n_layers; src++)
            if (inflight[src])
                (void)us_memlayer_end(m, src, ws, T, NULL, NULL);
        return rc;
    }
    for (size_t i = 0; i < n_items; i++) {
        us_seq_state *s = items[i].state;
        s->tokens_seen += items[i].n_tokens;
        s->seg_fill = (s->seg_fill + items[i].n_tokens) % c->segment_len;
    }
    size_t rows = T;
    if (last_only) {   /* keep only each item's last token */
        size_t end = 0;
        for (size_t i = 0; i < n_items; i++) {
            end += items[i].n_tokens;
            memmove(ws->x + i * d, ws->x + (end - 1) * d, d * sizeof(float));
        }
        rows = n_items;
    }
    us_rmsnorm_forward(ws->h, ws->x, m->norm_f, rows, d, c->norm_eps);
    us_matmul_forward(logits, ws->h, m->lm_head, rows, d, V, 0.0f);
    return US_OK;
}
