/*
 * model_config.h — shape and options of the UltraShard transformer.
 *
 * A decoder-only, byte-level transformer (vocabulary: 256 bytes + BOS, EOS,
 * PAD = 259 tokens). Each of n_layers blocks is
 *
 *   x += Wo . InfiniAttention(RMSNorm(x))            (segment length L)
 *   h  = RMSNorm(x)
 *   one of:  dense   x += SwiGLU-FFN(h)
 *            moe     x += sum over top-2 of E experts (SwiGLU FFNs)
 *            memory  pending[min(l + skip, n_layers - 1)] += UltraMem(h)
 *   x += pending[l]                                  (skip-layer outputs land)
 *
 * then a final RMSNorm and the LM head. The config is JSON (config.json in a
 * model directory), parsed with cJSON; every field is checked and an error
 * names the file and field. Weights are named and shaped by model.h.
 *
 * Variants (issue #13; binding text: SPEC-model-variants.md). Every key below
 * is optional and its default is the behaviour before it existed, so an old
 * config.json keeps its meaning:
 *   rope_theta [0]       > 0: RoPE on the local (in-segment) attention's q and
 *                        k, position = index within the segment, half-split
 *                        pairing (i, i + head_dim/2), inv_freq[i] =
 *                        theta^(-2i/head_dim); needs an even head_dim. The
 *                        Infini-attention memory (retrieve and update) uses
 *                        the unrotated q, k (kernels/rope.h).
 *   memory.score ["tdqkr"]  "pkm": additive product keys (s_row + s_col,
 *                        kernels/score.h US_PK_SUM); needs tucker_rank 1 and
 *                        tucker_cores 1, and the model stores no core.
 *   memory.tucker_cores [1] m Tucker cores (MCS, kernels/score.h): selection
 *                        by the summed core, then each core c scores the
 *                        selected values on its own (softmax per core when
 *                        weights = "softmax") and weights SLICE c of each
 *                        value row: value columns [c*v_dim/m, (c+1)*v_dim/m).
 *                        So v_dim must be a multiple of m; the pooled vector
 *                        of a group is the concatenation of the m slices.
 *   memory.query_norm ["none" when absent, as before this key had strings;
 *                        presets use "layernorm"]  "none" | "layernorm" (no
 *                        affine, eps = norm_eps) | "l2" (q / max(|q|, 1e-12));
 *                        per head, on the row and the column query
 *                        separately; true/false still read as
 *                        "layernorm"/"none". Written as the string.
 *   memory.output_gate [false]  true: out = (y * silu(h Wg)) Wout with y the
 *                        IVE output and h the memory layer's normed input
 *                        (weights layers.L.mem.gate, .out, [d][d]).
 */
#ifndef US_MODEL_CONFIG_H
#define US_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/infini.h"
#include "kernels/us_status.h"

#define US_VOCAB_BYTES 256
#define US_TOKEN_BOS   256
#define US_TOKEN_EOS   257
#define US_TOKEN_PAD   258
#define US_VOCAB_SIZE  259
#define US_MODEL_MAX_LAYERS 64
#define US_MODEL_FORMAT "ultrashard-model"
#define US_MODEL_FORMAT_VERSION 1

typedef enum us_layer_kind {
    US_LAYER_DENSE  = 0,
    US_LAYER_MOE    = 1,
    US_LAYER_MEMORY = 2,
} us_layer_kind;

typedef enum us_query_norm {
    US_QNORM_NONE      = 0,
    US_QNORM_LAYERNORM = 1,
    US_QNORM_L2        = 2,
} us_query_norm;

typedef enum us_mem_score {
    US_MEM_SCORE_TDQKR = 0,   /* Tucker-decomposed query-key retrieval (UltraMem) */
    US_MEM_SCORE_PKM   = 1,   /* additive product keys (Lample et al. 2019) */
} us_mem_score;

typedef struct us_memory_config {
    uint32_t heads;        /* PKM heads; their selections are pooled together */
    uint32_t n_keys;       /* sub-keys per side; virtual addresses = n_keys^2 */
    uint32_t k_dim;        /* query / key dimension of each side */
    uint32_t tucker_rank;  /* r: TDQKR key sets per side and core r x r */
    uint32_t knn;          /* values selected per token (top-m) */
    uint32_t candidates;   /* k' per side before exact scoring (>= knn) */
    uint32_t v_dim;        /* physical value row width */
    uint32_t ive_groups;   /* E virtual tables; physical rows = n_keys^2 / E */
    uint32_t skip;         /* output added `skip` layers later */
    uint32_t softmax;      /* 1: weights = softmax of the knn scores; 0: raw */
    uint32_t query_norm;   /* us_query_norm on each row/column query */
    uint32_t score;        /* us_mem_score */
    uint32_t tucker_cores; /* m: MCS cores (1 = plain TDQKR; pkm: 1) */
    uint32_t output_gate;  /* 1: SiLU-gated output projection (Memory+) */
} us_memory_config;

typedef struct us_model_config {
    uint32_t vocab_size;   /* always US_VOCAB_SIZE */
    uint32_t d_model;
    uint32_t n_layers;
    uint32_t n_heads;
    uint32_t head_dim;     /* d_key = d_value of the Infini-attention memory */
    uint32_t segment_len;  /* L */
    us_infini_rule infini_rule;
    float    norm_eps;
    float    rope_theta;   /* 0: no positional encoding; > 0: RoPE base */
    uint32_t ffn_hidden;   /* dense SwiGLU hidden width */
    uint32_t moe_experts;  /* E */
    uint32_t moe_top_k;    /* 2 */
    uint32_t moe_hidden;
    us_memory_config memory;
    us_layer_kind layers[US_MODEL_MAX_LAYERS];
} us_model_config;

/* Parses JSON text; `what` names the source in messages (a file path).
 * Returns: US_OK; US_EINVAL (bad JSON, missing or out-of-range field) or
 * US_EVERSION (format or version) naming what and the field. */
int us_model_config_parse(us_model_config *cfg, const char *json, const char *what,
                          us_err *err);

/* Reads and parses a config file.
 * Returns: US_OK; US_ENOTFOUND (no file), US_EIO, US_ECORRUPT (truncated
 * read), US_EINVAL (over 1 MiB) naming the path; then the parse errors. */
int us_model_config_load(us_model_config *cfg, const char *path, us_err *err);

/* Checks ranges and consistency (e.g. ive_groups divides n_keys^2).
 * Returns: US_OK; US_EINVAL naming what and the field. */
int us_model_config_validate(const us_model_config *cfg, const char *what, us_err *err);

/* Renders cfg as pretty JSON.
 * Returns: the text (caller frees); NULL on allocation failure. */
char *us_model_config_to_json(const us_model_config *cfg);

/* Named presets: "tiny" (tests: d 64, 4 layers dense/memory/moe/dense,
 * 2 heads, L 16), "small" and the bench-* presets.
 * Returns: US_OK; US_EINVAL for an unknown name (listing the known ones). */
int us_model_config_preset(us_model_config *cfg, const char *name, us_err *err);

/* Returns: the number of memory layers; cannot fail. */
uint32_t us_model_config_memory_layers(const us_model_config *cfg);
/* Returns: the layer index of memory table `table`; -1 if there is no such
 * table. */
int us_model_config_memory_layer_index(const us_model_config *cfg, uint32_t table);

/* Returns: the physical value rows of each memory table, n_keys^2 /
 * ive_groups; cannot fail (the config was validated). */
uint64_t us_model_config_table_rows(const us_model_config *cfg);

/* Per token, what a memory layer asks its value backend for: pairs =
 * heads * knn * tucker_cores (row, weight, group) and groups = ive_groups *
 * tucker_cores (group g*m + c is IVE group g weighted by core c; memlayer.c).
 * Returns: the count; cannot fail. */
uint32_t us_model_config_lookup_pairs(const us_model_config *cfg);
uint32_t us_model_config_lookup_groups(const us_model_config *cfg);

/* Returns: "dense", "moe" or "memory"; "?" for an unknown kind. */
const char *us_layer_kind_name(us_layer_kind kind);

#endif
