/*
 * bench_models.c — decoding time per token vs batch size for dense, MoE
 * and UltraMem models in this engine (UltraMem paper, Fig. "inference time").
 *
 * Three configs of the coordinator's transformer (coordinator/model/model.h), all
 * with d_model 256, 4 layers, 4 heads of 64, Infini-attention segment 2048,
 * scaled down from the paper's 1.6B models to fit 2 shared cores:
 *   dense     4 x SwiGLU FFN, hidden 1024
 *   moe       4 x MoE, 32 experts of hidden 512, top-2 (activated FFN
 *             params per layer = dense's; total = 16x)
 *   ultramem  dense(1216), memory, dense(1216), memory: TDQKR (r 2), 2 heads
 *             x knn 32, IVE 4, v_dim 256, query LayerNorm, n_keys 606
 *             (91809 physical rows per table): activated parameters ~
 *             dense's, total ~ moe's
 * (activated and total parameter counts are computed and printed, not
 * assumed). Each sequence decodes at a context of --context tokens inside its
 * segment: one sequence is prefilled, its state copied to the others.
 * Per batch size, the models take turns (4 rounds each) decoding steps (one
 * token per sequence), each step timed, until a time budget; ms per token = best step time / batch (median also
 * reported: the machine is shared and noisy).
 *
 * Bytes read per token is a model, not a counter: parameters read once per
 * step (attention and dense weights; MoE experts hit by at least one token,
 * expected over a uniform router; memory keys, query, core and IVE
 * projections; distinct value rows) plus each token's KV cache, divided by
 * the batch.
 *
 * Output: JSON lines (bench "models") on stdout, a table on stderr.
 * usage: bench_models [--batches 1,2,4,...] [--context N] [--budget-ms N]
 *                     [--models dense,moe,ultramem]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "coordinator/model/memory_backend.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_io.h"
#include "shard/synthetic.h"
#include "kernels/stats.h"

#define MAX_BATCHES 16

/* The three models are init-model's bench-* presets (model_config.c). */
static int make_config(us_model_config *c, const char *kind)
{
    char name[32];
    snprintf(name, sizeof name, "bench-%s", kind);
    return us_model_config_preset(c, name, NULL) == US_OK ? 0 : -1;
}

/* Parameters per token and in total, and bytes of parameters one step of
 * `batch` tokens reads (see the top comment). */
static void model_counts(const us_model_config *c, double batch, double *total,
                         double *activated, double *step_bytes)
{
    const double d = c->d_model, hd = (double)c->n_heads * c->head_dim;
    const us_memory_config *m = &c->memory;
    const double rows = (double)m->n_keys * m->n_keys / m->ive_groups;
    double tot = 0, act = 0, bytes = 0;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        double attn = 4 * d * hd + c->n_heads + 2 * d;
        tot += attn; act += attn; bytes += attn * 4;
        if (c->layers[l] == US_LAYER_DENSE) {
            double f = 3 * d * c->ffn_hidden;
            tot += f; act += f; bytes += f * 4;
        } else if (c->layers[l] == US_LAYER_MOE) {
            double e = 3 * d * c->moe_hidden, E = c->moe_experts;
            double hit = E * (1 - pow((E - c->moe_top_k) / E, batch));
            tot += E * e + d * E;
            act += c->moe_top_k * e + d * E;
            bytes += (hit * e + d * E) * 4;
        } else {
            double fixed = d * m->heads * 2 * m->k_dim                       /* query */
                         + 2.0 * m->heads * m->tucker_rank * m->n_keys * m->k_dim /* keys */
                         + (double)m->heads * m->tucker_rank * m->tucker_rank     /* core */
                         + (double)m->ive_groups * m->v_dim * d;                  /* IVE */
            double picks = (double)m->heads * m->knn;
            double distinct = rows * (1 - pow(1 - 1 / rows, batch * picks));
            tot += fixed + rows * m->v_dim;
            act += fixed + picks * m->v_dim;
            bytes += (fixed + distinct * m->v_dim) * 4;
        }
    }
    *total = tot; *activated = act; *step_bytes = bytes;
}

/* Copies the used part of src's state (first `fill` cache rows per layer, M, z). */
static void copy_state(us_seq_state *dst, const us_seq_state *src, const us_model_config *c)
{
    size_t hd = (size_t)c->n_heads * c->head_dim, L = c->segment_len;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        memcpy(dst->k_cache + l * L * hd, src->k_cache + l * L * hd, src->seg_fill * hd * 4);
        memcpy(dst->v_cache + l * L * hd, src->v_cache + l * L * hd, src->seg_fill * hd * 4);
        if (src->kr_cache != NULL)   /* RoPE models: the rotated keys too */
            memcpy(dst->kr_cache + l * L * hd, src->kr_cache + l * L * hd,
                   src->seg_fill * hd * 4);
    }
    memcpy(dst->mem, src->mem, c->n_layers * (hd * c->head_dim + hd) * sizeof(float));
    dst->tokens_seen = src->tokens_seen;
    dst->seg_fill = src->seg_fill;
}

#define MAX_MODELS 3
#define MAX_STEPS 256

/* One model under test with its tables, workspace and sequence states. */
typedef struct bench_model {
    const char *kind;
    us_model_config c;
    us_model m;
    uint32_t n_tables;
    float *tables[US_MODEL_MAX_LAYERS];
    const uint8_t **blocks[US_MODEL_MAX_LAYERS];
    us_rows_view views[US_MODEL_MAX_LAYERS];
    us_memory_local local;
    us_memory_backend backend;
    us_workspace ws;
    us_seq_state *states, saved;     /* [max_b]; saved = the prefilled context */
    us_batch_item *items;
    int32_t *tokens;
    float *logits;
    size_t ws_tokens;
    int max_b;
    uint32_t fill;                   /* tokens in the states now */
    double step_t[MAX_STEPS];        /* this batch's timed steps */
    int timed;
} bench_model;

static int model_setup(bench_model *bm, const char *kind, int max_b, uint32_t context)
{
    us_err err = {0};
    memset(bm, 0, sizeof *bm);
    bm->kind = kind;
    bm->max_b = max_b;
    us_model_config *c = &bm->c;
    if (make_config(c, kind) != 0 || us_model_config_validate(c, kind, &err) != US_OK ||
        us_model_alloc(&bm->m, c, &err) != US_OK)
        goto fail;
    us_model_init_random(&bm->m, 1);

    /* value tables for the memory layers (synthetic values, RAM) */
    bm->n_tables = us_model_config_memory_layers(c);
    uint64_t rows = us_model_config_table_rows(c);
    const uint32_t bb = 12;
    uint64_t n_blocks = (rows + (1u << bb) - 1) >> bb;
    size_t row_bytes = (size_t)c->memory.v_dim * 4;
    for (uint32_t t = 0; t < bm->n_tables; t++) {
        bm->tables[t] = malloc(rows * row_bytes);
        bm->blocks[t] = malloc(n_blocks * sizeof *bm->blocks[t]);
        if (!bm->tables[t] || !bm->blocks[t]) {
            us_err_set(&err, US_ENOMEM, "value table %u", t);
            goto fail;
        }
        for (uint64_t r = 0; r < rows; r++)
            us_synth_row_f32(bm->tables[t] + r * c->memory.v_dim, 1, t, r, c->memory.v_dim);
        for (uint64_t b = 0; b < n_blocks; b++)
            bm->blocks[t][b] = (const uint8_t *)bm->tables[t] + (b << bb) * row_bytes;
        bm->views[t] = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = c->memory.v_dim,
            .block_bits = bb, .row_stride_bytes = row_bytes, .rows = rows,
            .n_blocks = n_blocks, .blocks = bm->blocks[t] };
    }
    bm->local = (us_memory_local){ .tables = bm->views, .n_tables = (int)bm->n_tables,
                                   .n_threads = 1 };
    us_memory_local_backend(&bm->backend, &bm->local);
    if (bm->n_tables > 0 && us_model_set_backend(&bm->m, &bm->backend, &err) != US_OK)
        goto fail;

    bm->ws_tokens = (size_t)(max_b > (int)context ? max_b : (int)context);
    bm->states = calloc((size_t)max_b, sizeof *bm->states);
    bm->items = calloc((size_t)max_b, sizeof *bm->items);
    bm->tokens = malloc(bm->ws_tokens * sizeof *bm->tokens);
    bm->logits = malloc((size_t)max_b * US_VOCAB_SIZE * sizeof *bm->logits);
    if (!bm->states || !bm->items || !bm->tokens || !bm->logits) {
        us_err_set(&err, US_ENOMEM, "states");
        goto fail;
    }
    if (us_workspace_init(&bm->ws, c, bm->ws_tokens, &err) != US_OK)
        goto fail;
    for (size_t i = 0; i < bm->ws_tokens; i++)
        bm->tokens[i] = (int32_t)(32 + (i * 7) % 90);
    for (int i = 0; i < max_b; i++)
        if (us_seq_state_init(&bm->states[i], c, &err) != US_OK)
            goto fail;
    /* prefill sequence 0 to the context; batches start from copies of it */
    us_batch_item pre = { .state = &bm->states[0], .tokens = bm->tokens, .n_tokens = context };
    if (us_model_forward(&bm->m, &bm->ws, &pre, 1, bm->logits, true, &err) != US_OK ||
        us_seq_state_init(&bm->saved, c, &err) != US_OK)
        goto fail;
    copy_state(&bm->saved, &bm->states[0], c);
    return 0;
fail:
    fprintf(stderr, "bench_models: %s: %s\n", kind, err.msg);
    return -1;
}

static void model_free(bench_model *bm)
{
    if (bm->states)
        for (int i = 0; i < bm->max_b; i++) us_seq_state_free(&bm->states[i]);
    us_seq_state_free(&bm->saved);
    us_workspace_free(&bm->ws);
    us_model_free(&bm->m);
    for (uint32_t t = 0; t < bm->n_tables; t++) { free(bm->tables[t]); free(bm->blocks[t]); }
    free(bm->states); free(bm->items); free(bm->tokens); free(bm->logits);
}

static void batch_start(bench_model *bm, int b)
{
    for (int i = 0; i < b; i++) {
        copy_state(&bm->states[i], &bm->saved, &bm->c);
        bm->items[i] = (us_batch_item){ .state = &bm->states[i],
                                        .tokens = &bm->tokens[i % bm->ws_tokens], .n_tokens = 1 };
    }
    bm->fill = bm->saved.seg_fill;
    bm->timed = 0;
}

/* Decode steps of batch b for about budget_s (at least 2 timed), the first
 * step of a batch untimed (warm-up). Stops before the segment fills. */
static int run_steps(bench_model *bm, int b, double budget_s)
{
    us_err err = {0};
    double elapsed = 0;
    int here = 0;
    while (bm->timed < MAX_STEPS && bm->fill + 2 < bm->c.segment_len) {
        double t0 = us_now_s();
        if (us_model_forward(&bm->m, &bm->ws, bm->items, (size_t)b, bm->logits, true, &err) != US_OK) {
            fprintf(stderr, "bench_models: %s batch %d: %s\n", bm->kind, b, err.msg);
            return -1;
        }
        double dt = us_now_s() - t0;
        if (bm->fill++ > bm->saved.seg_fill) {
            bm->step_t[bm->timed++] = dt;
            elapsed += dt;
            here++;
        }
        if (here >= 2 && elapsed >= budget_s)
            break;
    }
    return 0;
}

static void report(bench_model *bm, int b, uint32_t context)
{
    const us_model_config *c = &bm->c;
    int n = bm->timed;
    for (int i = 1; i < n; i++)                 /* insertion sort: <= MAX_STEPS */
        for (int j = i; j > 0 && bm->step_t[j] < bm->step_t[j - 1]; j--) {
            double x = bm->step_t[j]; bm->step_t[j] = bm->step_t[j - 1]; bm->step_t[j - 1] = x;
        }
    double step_s = bm->step_t[0], median_s = bm->step_t[n / 2];
    double total, activated, step_bytes;
    model_counts(c, b, &total, &activated, &step_bytes);
    double mean_ctx = (context + bm->fill) / 2.0;
    double kv = 2.0 * c->n_layers * mean_ctx * c->n_heads * c->head_dim * 4;
    double head = (double)c->d_model * US_VOCAB_SIZE * 4;
    double bytes_token = (step_bytes + head) / b + kv;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\":\"models\",\"model\":\"%s\",\"batch\":%d,\"context\":%u,"
           "\"segment\":%u,\"d_model\":%u,\"n_layers\":%u,\"threads\":1,"
           "\"steps\":%d,\"ms_per_step\":%.6g,\"ms_per_token\":%.6g,"
           "\"ms_per_token_median\":%.6g,"
           "\"tokens_per_s\":%.6g,\"total_params\":%.6g,\"activated_params\":%.6g,"
           "\"bytes_read_per_token\":%.6g,\"kv_bytes_per_token\":%.6g,"
           "\"max_rss_bytes\":%ld}\n",
           bm->kind, b, context, c->segment_len, c->d_model, c->n_layers, n,
           step_s * 1e3, step_s * 1e3 / b, median_s * 1e3 / b, b / step_s, total, activated,
           bytes_token, kv, ru.ru_maxrss * 1024L);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int batches[MAX_BATCHES] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 }, n_batches = 9;
    uint32_t context = 64;
    double budget_s = 0.3;
    char models[256] = "dense,moe,ultramem";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--batches") == 0) {
            n_batches = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok && n_batches < MAX_BATCHES; tok = strtok(NULL, ",")) {
                int b = atoi(tok);
                if (b < 1 || b > 4096) { fprintf(stderr, "bench_models: bad batch '%s'\n", tok); return 2; }
                batches[n_batches++] = b;
            }
        } else if (strcmp(a, "--context") == 0) {
            context = (uint32_t)atoi(v);
            if (context < 1 || context > 1900) { fprintf(stderr, "bench_models: context 1..1900\n"); return 2; }
        } else if (strcmp(a, "--budget-ms") == 0) {
            budget_s = atof(v) / 1e3;
        } else if (strcmp(a, "--models") == 0) {
            snprintf(models, sizeof models, "%s", v);
        } else {
            fprintf(stderr, "bench_models: unknown option %s\n", a);
            return 2;
        }
    }
    if (argc % 2 == 0) { fprintf(stderr, "bench_models: %s needs a value\n", argv[argc - 1]); return 2; }
    /* All models live side by side and take turns in short rounds at each
     * batch size, so a noisy moment on the shared machine hits all of them
     * and the ratios stay fair. */
    int max_b = 1;
    for (int i = 0; i < n_batches; i++) if (batches[i] > max_b) max_b = batches[i];
    static bench_model bms[MAX_MODELS];
    int n_models = 0, rc = 0;
    for (char *kind = strtok(models, ","); kind && n_models < MAX_MODELS; kind = strtok(NULL, ","))
        if (model_setup(&bms[n_models++], kind, max_b, context) != 0) { rc = 1; goto done; }
    const int rounds = 4;
    for (int bi = 0; bi < n_batches; bi++) {
        for (int i = 0; i < n_models; i++) batch_start(&bms[i], batches[bi]);
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < n_models; i++)
                if (run_steps(&bms[i], batches[bi], budget_s / rounds) != 0) { rc = 1; goto done; }
        for (int i = 0; i < n_models; i++) report(&bms[i], batches[bi], context);
    }
done:
    for (int i = 0; i < n_models; i++) model_free(&bms[i]);
    return rc;
}
