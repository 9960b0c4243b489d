/*
 * bench_models.c — decoding time per token vs batch size for dense, MoE
 * and UltraMem models in this engine (UltraMem paper, Fig. "inference time").
 *
 * Three configs of the coordinator's transformer (coordinator/model.h), all
 * with d_model 256, 4 layers, 4 heads of 64, Infini-attention segment 2048,
 * scaled down from the paper's 1.6B models to fit 2 shared cores:
 *   dense     4 x SwiGLU FFN, hidden 1024
 *   moe       4 x MoE, 32 experts of hidden 512, top-2 (activated FFN
 *             params per layer = dense's; total = 16x)
 *   ultramem  dense(1216), memory, dense(1216), memory: TDQKR (r 2), 2 heads
 *             x knn 32, IVE 4, v_dim 256, n_keys 606 (91809 physical rows per
 *             table): activated parameters ~ dense's, total ~ moe's
 * (activated and total parameter counts are computed and printed, not
 * assumed). Each sequence decodes at a context of --context tokens inside its
 * segment: one sequence is prefilled, its state copied to the others.
 * Per batch size, decode steps (one token per sequence) are timed one by one
 * until a time budget; ms per token = best step time / batch (median also
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

#include "coordinator/memory_backend.h"
#include "coordinator/model.h"
#include "coordinator/model_io.h"
#include "shard/synthetic.h"

#define MAX_BATCHES 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int make_config(us_model_config *c, const char *kind)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = US_VOCAB_SIZE;
    c->d_model = 256; c->n_layers = 4; c->n_heads = 4; c->head_dim = 64;
    c->segment_len = 2048; c->infini_rule = US_INFINI_DELTA; c->norm_eps = 1e-5f;
    c->ffn_hidden = 1024; c->moe_experts = 32; c->moe_top_k = 2; c->moe_hidden = 512;
    c->memory = (us_memory_config){ .heads = 2, .n_keys = 606, .k_dim = 64, .tucker_rank = 2,
        .knn = 32, .candidates = 32, .v_dim = 256, .ive_groups = 4, .skip = 1, .softmax = 1 };
    for (uint32_t l = 0; l < c->n_layers; l++) {
        if (strcmp(kind, "dense") == 0) c->layers[l] = US_LAYER_DENSE;
        else if (strcmp(kind, "moe") == 0) c->layers[l] = US_LAYER_MOE;
        else if (strcmp(kind, "ultramem") == 0) c->layers[l] = (l % 2) ? US_LAYER_MEMORY : US_LAYER_DENSE;
        else return -1;
    }
    if (strcmp(kind, "ultramem") == 0)
        c->ffn_hidden = 1216;
    return 0;
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
    }
    memcpy(dst->mem, src->mem, c->n_layers * (hd * c->head_dim + hd) * sizeof(float));
    dst->tokens_seen = src->tokens_seen;
    dst->seg_fill = src->seg_fill;
}

static int bench_model(const char *kind, const int *batches, int n_batches, uint32_t context,
                       double budget_s)
{
    us_model_config c;
    us_err err = {0};
    us_model m;
    if (make_config(&c, kind) != 0 || us_model_config_validate(&c, kind, &err) != US_OK) {
        fprintf(stderr, "bench_models: %s config: %s\n", kind, err.msg);
        return -1;
    }
    if (us_model_alloc(&m, &c, &err) != US_OK) {
        fprintf(stderr, "bench_models: %s: %s\n", kind, err.msg);
        return -1;
    }
    us_model_init_random(&m, 1);

    /* value tables for the memory layers (synthetic values, RAM) */
    uint32_t n_tables = us_model_config_memory_layers(&c);
    uint64_t rows = us_model_config_table_rows(&c);
    const uint32_t bb = 12;
    uint64_t n_blocks = (rows + (1u << bb) - 1) >> bb;
    us_rows_view views[US_MODEL_MAX_LAYERS];
    float *tables[US_MODEL_MAX_LAYERS] = {0};
    const uint8_t **blocks[US_MODEL_MAX_LAYERS] = {0};
    us_memory_local local = { .tables = views, .n_tables = (int)n_tables, .n_threads = 1 };
    us_memory_backend backend;
    for (uint32_t t = 0; t < n_tables; t++) {
        size_t row_bytes = (size_t)c.memory.v_dim * 4;
        tables[t] = malloc(rows * row_bytes);
        blocks[t] = malloc(n_blocks * sizeof *blocks[t]);
        if (!tables[t] || !blocks[t]) { fprintf(stderr, "bench_models: out of memory\n"); return -1; }
        for (uint64_t r = 0; r < rows; r++)
            us_synth_row_f32(tables[t] + r * c.memory.v_dim, 1, t, r, c.memory.v_dim);
        for (uint64_t b = 0; b < n_blocks; b++)
            blocks[t][b] = (const uint8_t *)tables[t] + (b << bb) * row_bytes;
        views[t] = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = c.memory.v_dim,
            .block_bits = bb, .row_stride_bytes = row_bytes, .rows = rows,
            .n_blocks = n_blocks, .blocks = blocks[t] };
    }
    us_memory_local_backend(&backend, &local);
    if (n_tables > 0 && us_model_set_backend(&m, &backend, &err) != US_OK) {
        fprintf(stderr, "bench_models: %s backend: %s\n", kind, err.msg);
        return -1;
    }

    int max_b = 1;
    for (int i = 0; i < n_batches; i++) if (batches[i] > max_b) max_b = batches[i];
    us_workspace ws;
    size_t ws_tokens = (size_t)(max_b > (int)context ? max_b : (int)context);
    us_seq_state *states = calloc((size_t)max_b, sizeof *states);
    us_batch_item *items = calloc((size_t)max_b, sizeof *items);
    int32_t *tokens = malloc(ws_tokens * sizeof *tokens);
    float *logits = malloc((size_t)max_b * US_VOCAB_SIZE * sizeof *logits);
    if (!states || !items || !tokens || !logits ||
        us_workspace_init(&ws, &c, ws_tokens, &err) != US_OK) {
        fprintf(stderr, "bench_models: %s workspace: %s\n", kind, err.msg);
        return -1;
    }
    for (size_t i = 0; i < ws_tokens; i++)
        tokens[i] = (int32_t)(32 + (i * 7) % 90);
    for (int i = 0; i < max_b; i++)
        if (us_seq_state_init(&states[i], &c, &err) != US_OK) {
            fprintf(stderr, "bench_models: state: %s\n", err.msg);
            return -1;
        }
    /* prefill sequence 0 to the context, copy it to the others */
    us_batch_item pre = { .state = &states[0], .tokens = tokens, .n_tokens = context };
    if (context > 0 && us_model_forward(&m, &ws, &pre, 1, logits, true, &err) != US_OK) {
        fprintf(stderr, "bench_models: %s prefill: %s\n", kind, err.msg);
        return -1;
    }
    us_seq_state saved;
    if (us_seq_state_init(&saved, &c, &err) != US_OK) return -1;
    copy_state(&saved, &states[0], &c);

    for (int bi = 0; bi < n_batches; bi++) {
        int b = batches[bi];
        for (int i = 0; i < b; i++) {
            copy_state(&states[i], &saved, &c);
            items[i] = (us_batch_item){ .state = &states[i], .tokens = &tokens[i % ws_tokens],
                                        .n_tokens = 1 };
        }
        /* one untimed warm-up step, then timed steps until the budget (at
         * least 3): the machine is shared, so the best step is the estimate
         * and the median is reported beside it */
        double step_t[64];
        int steps = 0, timed = 0;
        double elapsed = 0;
        for (;;) {
            double t0 = now_s();
            if (us_model_forward(&m, &ws, items, (size_t)b, logits, true, &err) != US_OK) {
                fprintf(stderr, "bench_models: %s batch %d: %s\n", kind, b, err.msg);
                return -1;
            }
            double dt = now_s() - t0;
            if (steps++ > 0) {
                step_t[timed++] = dt;
                elapsed += dt;
            }
            if (timed >= 3 && (elapsed >= budget_s || timed >= 64 ||
                               context + steps + 1 >= c.segment_len))
                break;
        }
        for (int i = 1; i < timed; i++)            /* insertion sort: <= 64 values */
            for (int j = i; j > 0 && step_t[j] < step_t[j - 1]; j--) {
                double x = step_t[j]; step_t[j] = step_t[j - 1]; step_t[j - 1] = x;
            }
        double step_s = step_t[0], median_s = step_t[timed / 2];
        double total, activated, step_bytes;
        model_counts(&c, b, &total, &activated, &step_bytes);
        double kv = 2.0 * c.n_layers * (context + steps / 2.0) * c.n_heads * c.head_dim * 4;
        double head = (double)c.d_model * US_VOCAB_SIZE * 4;
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
               kind, b, context, c.segment_len, c.d_model, c.n_layers, timed,
               step_s * 1e3, step_s * 1e3 / b, median_s * 1e3 / b, b / step_s, total, activated, bytes_token, kv,
               ru.ru_maxrss * 1024L);
        fflush(stdout);
    }
    us_seq_state_free(&saved);
    for (int i = 0; i < max_b; i++) us_seq_state_free(&states[i]);
    us_workspace_free(&ws);
    us_model_free(&m);
    for (uint32_t t = 0; t < n_tables; t++) { free(tables[t]); free(blocks[t]); }
    free(states); free(items); free(tokens); free(logits);
    return 0;
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
    for (char *kind = strtok(models, ","); kind; kind = strtok(NULL, ",")) {
        if (bench_model(kind, batches, n_batches, context, budget_s) != 0)
            return 1;
    }
    return 0;
}
