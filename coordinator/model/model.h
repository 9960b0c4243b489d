/*
 * model.h — the UltraShard transformer: weights, per-sequence state, forward.
 *
 * Weights (all f32, row-major, y = x W with W stored [in][out]) are carved
 * out of one allocation owned by us_model (llm.c style). Their names and
 * shapes, as stored in weights.safetensors, come from us_model_params():
 *
 *   tok_emb [V][d]                 norm_f [d]            lm_head [d][V]
 *   layers.L.attn_norm [d]         layers.L.ffn_norm [d]
 *   layers.L.attn.wq|wk|wv [d][H*dh]   .wo [H*dh][d]   .beta [H]
 *   dense:  layers.L.ffn.w1|w3 [d][f]  .w2 [f][d]
 *   moe:    layers.L.moe.router [d][E] .w1|w3 [E][d][fm] .w2 [E][fm][d]
 *   memory: layers.L.mem.wq [d][Hm*2*kd]  (per head: row query, column query)
 *           .keys_row|keys_col [Hm][r][n_keys][kd]
 *           .core [Hm][m][r][r]  (tdqkr only; m = tucker_cores; a file from
 *                 before MCS holds [Hm][r][r], the same bytes for m = 1,
 *                 and still loads)
 *           .ive [G][v_dim][d]
 *           .gate, .out [d][d]   (only with memory.output_gate)
 * Memory value tables are not weights: they are served by a
 * us_memory_backend (memory_backend.h), table id = order of the memory layer.
 *
 * Sequence state (us_seq_state): the KV cache of the current segment only
 * (plus the segment's RoPE-rotated keys when rope_theta > 0: local attention
 * uses rotated q, k at in-segment positions, the memory the unrotated ones),
 * and the Infini-attention memory M, z of every layer and head, which carry
 * across segments. Its size is fixed whatever the sequence length.
 *
 * Forward (us_model_forward) runs one step over a batch of sequences: each
 * item appends any number of tokens to its sequence (a long prompt chunk may
 * span many segments). All items' tokens go through the norms, projections,
 * FFNs, MoE and memory lookups together, as matrix-matrix kernels (one lookup
 * per memory layer per step, begun at the memory layer and ended `skip`
 * layers later, see memlayer.h). Only Infini-attention is sequential: per
 * layer, each item walks its tokens segment by segment: a piece attends
 * causally to its segment's cache and retrieves from M, z as they were before
 * its segment; when a segment fills, M, z are updated with its K, V and the
 * cache is emptied. So a layer finishes every segment of a chunk before the
 * next layer starts, which the paper's per-segment order allows: the only
 * dependency between segments is the memory within one layer. Prefill in
 * chunks of any size and token-by-token decoding give the same logits up to
 * float rounding.
 */
#ifndef US_MODEL_H
#define US_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/model/memory_backend.h"
#include "coordinator/model/model_config.h"
#include "kernels/us_status.h"

#define US_PARAM_NAME_BYTES 64
#define US_MODEL_MAX_PARAMS (8 + 16 * US_MODEL_MAX_LAYERS)

typedef struct us_param_desc {
    char     name[US_PARAM_NAME_BYTES];
    int      ndim;
    uint64_t shape[4];
    uint64_t count;          /* elements */
    uint64_t offset;         /* elements from the start of the parameter block */
    float    init_std;       /* random init: N(0, init_std); < 0 = constant -init_std */
} us_param_desc;

typedef struct us_layer_weights {
    const float *attn_norm, *wq, *wk, *wv, *wo, *beta, *ffn_norm;
    const float *w1, *w3, *w2, *router;                    /* dense / moe */
    const float *mem_wq, *mem_keys_row, *mem_keys_col;
    const float *mem_core, *mem_ive;                       /* memory (core NULL: pkm) */
    const float *mem_gate, *mem_out;                       /* NULL without output_gate */
} us_layer_weights;

typedef struct us_model {
    us_model_config cfg;
    float   *params;               /* owned, n_params floats */
    uint64_t n_params;
    us_param_desc *descs;          /* owned, n_descs */
    size_t   n_descs;
    const float *tok_emb, *norm_f, *lm_head;
    us_layer_weights layers[US_MODEL_MAX_LAYERS];
    int      table_of_layer[US_MODEL_MAX_LAYERS];   /* memory table id or -1 */
    us_memory_backend backend;     /* set by us_model_set_backend */
} us_model;

/* Lists the parameters of cfg into out[0..cap) in storage order (out may be
 * NULL with cap 0 to count) and the total elements in *total.
 * Returns: the number of parameters (<= US_MODEL_MAX_PARAMS); cannot fail. */
size_t us_model_params(const us_model_config *cfg, us_param_desc *out, size_t cap,
                       uint64_t *total);

/* Allocates the parameter block for cfg (zeroed) and wires the pointers.
 * Returns: US_OK; US_ENOMEM (m left freed and empty). */
int us_model_alloc(us_model *m, const us_model_config *cfg, us_err *err);
/* Returns: nothing; cannot fail (a freed model may be freed again). */
void us_model_free(us_model *m);

/* Returns: a pointer to a parameter by name (for loading/init); NULL if
 * unknown. */
float *us_model_param(us_model *m, const char *name);

/* Attaches the value backend and checks every memory table's shape against
 * the config (rows = n_keys^2 / ive_groups, dim = v_dim).
 * Returns: US_OK; US_EINVAL naming the table on a shape mismatch; the
 * backend's table_info error (US_ENOTFOUND for a missing table) as is. The
 * model's backend is unchanged on error. */
int us_model_set_backend(us_model *m, const us_memory_backend *backend, us_err *err);

typedef struct us_seq_state {
    uint64_t tokens_seen;
    uint32_t seg_fill;       /* tokens in the current segment's cache, < L */
    float   *k_cache;        /* [n_layers][L][H*dh] */
    float   *v_cache;        /* [n_layers][L][H*dh] */
    float   *mem;            /* [n_layers][H][dh][dh] */
    float   *mem_norm;       /* [n_layers][H][dh] */
    float   *kr_cache;       /* [n_layers][L][H*dh] RoPE-rotated keys; NULL without
                              * rope_theta (k_cache stays unrotated for the memory) */
    float   *block;          /* the one allocation behind the four arrays */
} us_seq_state;

/* An empty sequence state (zero memory, empty cache) for cfg.
 * Returns: US_OK; US_ENOMEM (s left empty). */
int  us_seq_state_init(us_seq_state *s, const us_model_config *cfg, us_err *err);
/* Back to empty, keeping the allocation. Returns: nothing; cannot fail. */
void us_seq_state_reset(us_seq_state *s, const us_model_config *cfg);
/* Returns: nothing; cannot fail. */
void us_seq_state_free(us_seq_state *s);
/* Returns: floats held by one state (for memory reports); cannot fail. */
size_t us_seq_state_floats(const us_model_config *cfg);

/* Activation buffers for steps of up to max_tokens tokens; one allocation. */
typedef struct us_workspace {
    size_t max_tokens;
    size_t bytes;
    void  *block;
    float *x, *h, *q, *k, *v, *a_dot, *a_mem, *att, *hid1, *hid2, *moe_in, *moe_out;
    float *router, *moe_w, *scratch;
    float *q_rot;             /* [T][H*dh] RoPE-rotated queries (rope_theta > 0) */
    uint32_t *moe_e, *moe_tok;
    void  *mem_ws;            /* memory layer buffers (memlayer.h), 64-byte aligned */
    size_t mem_ws_bytes;
} us_workspace;

/* Returns: US_OK; US_ENOMEM naming the bytes and tokens (ws left empty). */
int  us_workspace_init(us_workspace *ws, const us_model_config *cfg, size_t max_tokens,
                       us_err *err);
/* Returns: nothing; cannot fail. */
void us_workspace_free(us_workspace *ws);

typedef struct us_batch_item {
    us_seq_state  *state;
    const int32_t *tokens;    /* token ids in [0, V) */
    uint32_t       n_tokens;  /* >= 1; may cross segment boundaries */
} us_batch_item;

/* One forward step (see the top comment). logits: last_only ? one row per
 * item [n_items][V] : every token [sum n_tokens][V].
 * Returns: US_OK; US_EINVAL for a bad item (no tokens, a token out of range,
 * the same state in two items, more tokens in all than the workspace holds)
 * before any state changes; a memory layer's error (scoring or backend: any US_E* code,
 * prefixed with the layer) is passed up, and the states may then be partly
 * advanced: drop them. */
int us_model_forward(const us_model *m, us_workspace *ws, us_batch_item *items,
                     size_t n_items, float *logits, bool last_only, us_err *err);

#endif
