/* model_config.c — config.json parse/validate/render and presets: see model_config.h. */
#include "coordinator/model/model_config.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "shard/durable.h"

static const char *const kind_names[] = { "dense", "moe", "memory" };

const char *us_layer_kind_name(us_layer_kind kind)
{
    return (unsigned)kind < 3 ? kind_names[kind] : "?";
}

/* Reads a required integer field in [min, max]. */
static int get_u32(const cJSON *obj, const char *field, uint32_t min, uint32_t max,
                   uint32_t *out, const char *what, us_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (it == NULL)
        return us_err_set(err, US_EINVAL, "%s: missing field '%s'", what, field);
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
        return us_err_set(err, US_EINVAL, "%s: field '%s' must be an integer", what, field);
    double v = it->valuedouble;
    if (v < min || v > max)
        return us_err_set(err, US_EINVAL, "%s: field '%s' = %.0f is outside [%u, %u]",
                          what, field, v, min, max);
    *out = (uint32_t)v;
    return US_OK;
}

static const cJSON *get_object(const cJSON *obj, const char *field, const char *what,
                               us_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!cJSON_IsObject(it)) {
        us_err_set(err, US_EINVAL, "%s: field '%s' must be an object", what, field);
        return NULL;
    }
    return it;
}

/* Field readers below return on the first bad field, naming it. */
#define U32(obj, name, min, max, dst) \
    if ((rc = get_u32(obj, name, min, max, dst, what, err)) != US_OK) return rc

/* "format" and "version": refuse a file this build does not read. */
static int parse_format(const cJSON *root, const char *what, us_err *err)
{
    int rc;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, US_MODEL_FORMAT) != 0)
        return us_err_set(err, US_EINVAL, "%s: field 'format' must be \"%s\"", what,
                          US_MODEL_FORMAT);
    uint32_t version;
    U32(root, "version", 0, 1u << 30, &version);
    if (version != US_MODEL_FORMAT_VERSION)
        return us_err_set(err, US_EVERSION, "%s: model format version %u, this build reads %d",
                          what, version, US_MODEL_FORMAT_VERSION);
    return US_OK;
}

/* The transformer's shape: sizes, norm epsilon, Infini-attention rule. */
static int parse_dims(const cJSON *root, us_model_config *c, const char *what, us_err *err)
{
    int rc;
    U32(root, "vocab_size", US_VOCAB_SIZE, US_VOCAB_SIZE, &c->vocab_size);
    U32(root, "d_model", 1, 1 << 16, &c->d_model);
    U32(root, "n_heads", 1, 1024, &c->n_heads);
    U32(root, "head_dim", 1, 4096, &c->head_dim);
    U32(root, "segment_len", 1, 1 << 20, &c->segment_len);
    U32(root, "ffn_hidden", 1, 1 << 20, &c->ffn_hidden);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "norm_eps");
    /* Checked again as the float the model uses: a double such as 1e-60 is
     * > 0 but rounds to 0.0f (found by tests/fuzz/fuzz_model_config.c). */
    if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0) || eps->valuedouble > 1 ||
        !((float)eps->valuedouble > 0))
        return us_err_set(err, US_EINVAL, "%s: field 'norm_eps' must be a number in (0, 1]",
                          what);
    c->norm_eps = (float)eps->valuedouble;
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(root, "infini_rule");
    if (cJSON_IsString(rule) && strcmp(rule->valuestring, "linear") == 0)
        c->infini_rule = US_INFINI_LINEAR;
    else if (cJSON_IsString(rule) && strcmp(rule->valuestring, "delta") == 0)
        c->infini_rule = US_INFINI_DELTA;
    else
        return us_err_set(err, US_EINVAL, "%s: field 'infini_rule' must be \"linear\" or "
                          "\"delta\"", what);
    return US_OK;
}

static int parse_moe(const cJSON *root, us_model_config *c, const char *what, us_err *err)
{
    int rc;
    const cJSON *moe = get_object(root, "moe", what, err);
    if (moe == NULL)
        return US_EINVAL;
    U32(moe, "experts", 1, 256, &c->moe_experts);
    U32(moe, "top_k", 1, 256, &c->moe_top_k);
    U32(moe, "hidden", 1, 1 << 20, &c->moe_hidden);
    return US_OK;
}

/* Finds `name` in a NULL-terminated list; -1 if absent. */
static int name_index(const char *const *names, const char *name)
{
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static const char *const qnorm_names[] = { "none", "layernorm", "l2", NULL };
static const char *const score_names[] = { "tdqkr", "pkm", NULL };

/* Optional memory keys of the variants (model_config.h); absent = the
 * behaviour before they existed. */
static int parse_memory_variants(const cJSON *mem, us_memory_config *m, const char *what,
                                 us_err *err)
{
    int rc;
    const cJSON *qn = cJSON_GetObjectItemCaseSensitive(mem, "query_norm");
    int q = qn == NULL ? US_QNORM_NONE : cJSON_IsBool(qn) ? (cJSON_IsTrue(qn) ? 1 : 0)
          : cJSON_IsString(qn) ? name_index(qnorm_names, qn->valuestring) : -1;
    if (q < 0)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.query_norm' must be \"none\", "
                          "\"layernorm\", \"l2\", true or false", what);
    m->query_norm = (uint32_t)q;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(mem, "score");
    int k = sc == NULL ? US_MEM_SCORE_TDQKR
          : cJSON_IsString(sc) ? name_index(score_names, sc->valuestring) : -1;
    if (k < 0)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.score' must be \"tdqkr\" or "
                          "\"pkm\"", what);
    m->score = (uint32_t)k;
    m->tucker_cores = 1;
    if (cJSON_GetObjectItemCaseSensitive(mem, "tucker_cores") != NULL)
        U32(mem, "tucker_cores", 1, 16, &m->tucker_cores);
    const cJSON *gate = cJSON_GetObjectItemCaseSensitive(mem, "output_gate");
    if (gate != NULL && !cJSON_IsBool(gate))
        return us_err_set(err, US_EINVAL, "%s: field 'memory.output_gate' must be true or "
                          "false", what);
    m->output_gate = cJSON_IsTrue(gate);
    return US_OK;
}

/* Optional "rope_theta" (default 0 = no positional encoding), checked as the
 * float the model uses. */
static int parse_rope(const cJSON *root, us_model_config *c, const char *what, us_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    c->rope_theta = 0.0f;
    if (it == NULL)
        return US_OK;
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0) || !(it->valuedouble <= 1e30) ||
        (it->valuedouble > 0 && !((float)it->valuedouble > 0.0f)))
        return us_err_set(err, US_EINVAL, "%s: field 'rope_theta' must be 0 (no RoPE) or a "
                          "number in (0, 1e30]", what);
    c->rope_theta = (float)it->valuedouble;
    return US_OK;
}

static int parse_memory(const cJSON *root, us_memory_config *m, const char *what, us_err *err)
{
    int rc;
    const cJSON *mem = get_object(root, "memory", what, err);
    if (mem == NULL)
        return US_EINVAL;
    U32(mem, "heads", 1, 64, &m->heads);
    U32(mem, "n_keys", 1, 1 << 20, &m->n_keys);
    U32(mem, "k_dim", 1, 1 << 16, &m->k_dim);
    U32(mem, "tucker_rank", 1, 16, &m->tucker_rank);
    U32(mem, "knn", 1, 4096, &m->knn);
    U32(mem, "candidates", 1, 4096, &m->candidates);
    U32(mem, "v_dim", 1, 1 << 16, &m->v_dim);
    U32(mem, "ive_groups", 1, 255, &m->ive_groups);
    U32(mem, "skip", 0, US_MODEL_MAX_LAYERS, &m->skip);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(mem, "weights");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "softmax") == 0)
        m->softmax = 1;
    else if (!(cJSON_IsString(act) && strcmp(act->valuestring, "raw") == 0))
        return us_err_set(err, US_EINVAL, "%s: field 'memory.weights' must be \"softmax\" or "
                          "\"raw\"", what);
    return parse_memory_variants(mem, m, what, err);
}

/* "layers" (the kind of each layer), checked against "n_layers". */
static int parse_layers(const cJSON *root, us_model_config *c, const char *what, us_err *err)
{
    int rc;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1 ||
        cJSON_GetArraySize(layers) > US_MODEL_MAX_LAYERS)
        return us_err_set(err, US_EINVAL, "%s: field 'layers' must be an array of 1..%d kinds",
                          what, US_MODEL_MAX_LAYERS);
    c->n_layers = (uint32_t)cJSON_GetArraySize(layers);
    uint32_t n_layers_field;
    U32(root, "n_layers", 1, US_MODEL_MAX_LAYERS, &n_layers_field);
    if (n_layers_field != c->n_layers)
        return us_err_set(err, US_EINVAL, "%s: 'n_layers' is %u but 'layers' lists %u",
                          what, n_layers_field, c->n_layers);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const cJSON *k = cJSON_GetArrayItem(layers, (int)l);
        int found = -1;
        for (int i = 0; i < 3 && cJSON_IsString(k); i++)
            if (strcmp(k->valuestring, kind_names[i]) == 0)
                found = i;
        if (found < 0)
            return us_err_set(err, US_EINVAL, "%s: layers[%u] must be \"dense\", \"moe\" or "
                              "\"memory\"", what, l);
        c->layers[l] = (us_layer_kind)found;
    }
    return US_OK;
}

int us_model_config_parse(us_model_config *cfg, const char *json, const char *what,
                          us_err *err)
{
    int rc = US_OK;
    us_model_config c;
    memset(&c, 0, sizeof c);
    cJSON *root = cJSON_Parse(json);
    if (root == NULL || !cJSON_IsObject(root))
        rc = us_err_set(err, US_EINVAL, "%s: not a JSON object (parse error near byte %ld)",
                        what, root ? 0L : (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    if (rc == US_OK)
        rc = parse_format(root, what, err);
    if (rc == US_OK)
        rc = parse_dims(root, &c, what, err);
    if (rc == US_OK)
        rc = parse_rope(root, &c, what, err);
    if (rc == US_OK)
        rc = parse_moe(root, &c, what, err);
    if (rc == US_OK)
        rc = parse_memory(root, &c.memory, what, err);
    if (rc == US_OK)
        rc = parse_layers(root, &c, what, err);
    if (rc == US_OK)
        rc = us_model_config_validate(&c, what, err);
    if (rc == US_OK)
        *cfg = c;
    cJSON_Delete(root);
    return rc;
}

/* The variant keys (model_config.h): ranges and what each needs. */
static int validate_variants(const us_model_config *c, const char *what, us_err *err)
{
    const us_memory_config *m = &c->memory;
    if (!(c->rope_theta >= 0.0f && c->rope_theta <= 1e30f))
        return us_err_set(err, US_EINVAL, "%s: field 'rope_theta' must be 0 or in (0, 1e30]",
                          what);
    if (c->rope_theta > 0.0f && c->head_dim % 2 != 0)
        return us_err_set(err, US_EINVAL, "%s: field 'rope_theta' needs an even head_dim "
                          "(head_dim %u)", what, c->head_dim);
    if (m->query_norm > US_QNORM_L2 || m->score > US_MEM_SCORE_PKM || m->output_gate > 1)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.query_norm', 'memory.score' or "
                          "'memory.output_gate' out of range", what);
    if (m->tucker_cores < 1 || m->tucker_cores > 16)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.tucker_cores' = %u is outside "
                          "[1, 16]", what, m->tucker_cores);
    if (m->score == US_MEM_SCORE_PKM && (m->tucker_rank != 1 || m->tucker_cores != 1))
        return us_err_set(err, US_EINVAL, "%s: field 'memory.score' \"pkm\" needs "
                          "tucker_rank 1 and tucker_cores 1 (got %u and %u)", what,
                          m->tucker_rank, m->tucker_cores);
    if (m->v_dim % m->tucker_cores != 0)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.tucker_cores' = %u must divide "
                          "v_dim %u (core c weights slice c of each value row)", what,
                          m->tucker_cores, m->v_dim);
    if (m->ive_groups * m->tucker_cores > 255)
        return us_err_set(err, US_EINVAL, "%s: field 'memory.tucker_cores' = %u times "
                          "ive_groups %u exceeds 255 lookup groups", what, m->tucker_cores,
                          m->ive_groups);
    return US_OK;
}

int us_model_config_validate(const us_model_config *c, const char *what, us_err *err)
{
    const us_memory_config *m = &c->memory;
    if (m->heads == 0 || m->n_keys == 0 || m->k_dim == 0 || m->tucker_rank == 0 ||
        m->knn == 0 || m->candidates == 0 || m->v_dim == 0 || m->ive_groups == 0 ||
        c->moe_experts == 0 || c->moe_top_k == 0)
        return us_err_set(err, US_EINVAL, "%s: memory and moe sizes must be >= 1", what);
    if (c->moe_top_k > c->moe_experts)
        return us_err_set(err, US_EINVAL, "%s: moe.top_k %u > moe.experts %u", what,
                          c->moe_top_k, c->moe_experts);
    uint64_t virt = (uint64_t)m->n_keys * m->n_keys;
    if (virt % m->ive_groups != 0)
        return us_err_set(err, US_EINVAL, "%s: memory.ive_groups %u does not divide "
                          "n_keys^2 = %llu", what, m->ive_groups, (unsigned long long)virt);
    if (m->candidates > 256 || m->knn > 256)
        return us_err_set(err, US_EINVAL, "%s: memory.candidates and memory.knn must be "
                          "<= 256", what);
    if (m->candidates > m->n_keys || m->knn > (uint64_t)m->candidates * m->candidates)
        return us_err_set(err, US_EINVAL, "%s: memory needs knn <= candidates^2 and "
                          "candidates <= n_keys (knn %u, candidates %u, n_keys %u)", what,
                          m->knn, m->candidates, m->n_keys);
    return validate_variants(c, what, err);
}

int us_model_config_load(us_model_config *cfg, const char *path, us_err *err)
{
    char *buf;
    size_t len;
    int rc = us_read_file(path, 1u << 20, "config", &buf, &len, err);
    if (rc != US_OK)
        return rc;
    rc = us_model_config_parse(cfg, buf, path, err);
    free(buf);
    return rc;
}

char *us_model_config_to_json(const us_model_config *c)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON_AddStringToObject(root, "format", US_MODEL_FORMAT);
    cJSON_AddNumberToObject(root, "version", US_MODEL_FORMAT_VERSION);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "d_model", c->d_model);
    cJSON_AddNumberToObject(root, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(root, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(root, "segment_len", c->segment_len);
    cJSON_AddStringToObject(root, "infini_rule",
                            c->infini_rule == US_INFINI_DELTA ? "delta" : "linear");
    char eps[32];   /* shortest text that reads back as the same float */
    snprintf(eps, sizeof eps, "%.9g", (double)c->norm_eps);
    cJSON_AddNumberToObject(root, "norm_eps", strtod(eps, NULL));
    snprintf(eps, sizeof eps, "%.9g", (double)c->rope_theta);
    cJSON_AddNumberToObject(root, "rope_theta", strtod(eps, NULL));
    cJSON_AddNumberToObject(root, "ffn_hidden", c->ffn_hidden);
    cJSON *moe = cJSON_AddObjectToObject(root, "moe");
    cJSON_AddNumberToObject(moe, "experts", c->moe_experts);
    cJSON_AddNumberToObject(moe, "top_k", c->moe_top_k);
    cJSON_AddNumberToObject(moe, "hidden", c->moe_hidden);
    cJSON *mem = cJSON_AddObjectToObject(root, "memory");
    cJSON_AddNumberToObject(mem, "heads", c->memory.heads);
    cJSON_AddNumberToObject(mem, "n_keys", c->memory.n_keys);
    cJSON_AddNumberToObject(mem, "k_dim", c->memory.k_dim);
    cJSON_AddNumberToObject(mem, "tucker_rank", c->memory.tucker_rank);
    cJSON_AddNumberToObject(mem, "knn", c->memory.knn);
    cJSON_AddNumberToObject(mem, "candidates", c->memory.candidates);
    cJSON_AddNumberToObject(mem, "v_dim", c->memory.v_dim);
    cJSON_AddNumberToObject(mem, "ive_groups", c->memory.ive_groups);
    cJSON_AddNumberToObject(mem, "skip", c->memory.skip);
    cJSON_AddStringToObject(mem, "weights", c->memory.softmax ? "softmax" : "raw");
    cJSON_AddStringToObject(mem, "query_norm", c->memory.query_norm <= US_QNORM_L2
                            ? qnorm_names[c->memory.query_norm] : "?");
    cJSON_AddStringToObject(mem, "score", c->memory.score <= US_MEM_SCORE_PKM
                            ? score_names[c->memory.score] : "?");
    cJSON_AddNumberToObject(mem, "tucker_cores", c->memory.tucker_cores);
    cJSON_AddBoolToObject(mem, "output_gate", c->memory.output_gate != 0);
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (uint32_t l = 0; l < c->n_layers; l++)
        cJSON_AddItemToArray(layers, cJSON_CreateString(us_layer_kind_name(c->layers[l])));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

int us_model_config_preset(us_model_config *c, const char *name, us_err *err)
{
    memset(c, 0, sizeof *c);
    c->vocab_size = US_VOCAB_SIZE;
    c->infini_rule = US_INFINI_DELTA;
    c->norm_eps = 1e-5f;
    c->moe_top_k = 2;
    c->memory.tucker_rank = 2;
    if (strcmp(name, "tiny") == 0) {
        c->d_model = 64; c->n_heads = 2; c->head_dim = 32; c->segment_len = 16;
        c->ffn_hidden = 128; c->moe_experts = 4; c->moe_hidden = 64;
        c->memory = (us_memory_config){ .heads = 2, .n_keys = 16, .k_dim = 16,
            .tucker_rank = 2, .knn = 4, .candidates = 4, .v_dim = 32, .ive_groups = 4,
            .skip = 1, .softmax = 1, .query_norm = US_QNORM_LAYERNORM,
            .tucker_cores = 1 };
        c->n_layers = 4;
        us_layer_kind kinds[4] = { US_LAYER_DENSE, US_LAYER_MEMORY, US_LAYER_MOE,
                                   US_LAYER_DENSE };
        memcpy(c->layers, kinds, sizeof kinds);
    } else if (strcmp(name, "small") == 0) {
        c->d_model = 256; c->n_heads = 4; c->head_dim = 64; c->segment_len = 128;
        c->ffn_hidden = 768; c->moe_experts = 8; c->moe_hidden = 384;
        c->memory = (us_memory_config){ .heads = 2, .n_keys = 256, .k_dim = 64,
            .tucker_rank = 2, .knn = 16, .candidates = 8, .v_dim = 128, .ive_groups = 4,
            .skip = 1, .softmax = 1, .query_norm = US_QNORM_LAYERNORM,
            .tucker_cores = 1 };
        c->n_layers = 8;
        us_layer_kind kinds[8] = { US_LAYER_DENSE, US_LAYER_MEMORY, US_LAYER_DENSE,
                                   US_LAYER_MOE, US_LAYER_DENSE, US_LAYER_MEMORY,
                                   US_LAYER_MOE, US_LAYER_DENSE };
        memcpy(c->layers, kinds, sizeof kinds);
    } else if (strncmp(name, "bench-", 6) == 0) {
        /* The seed paper's comparison (UltraMem vs MoE vs dense at equal
         * activated parameters, MoE and UltraMem at equal total), scaled down
         * from its 1.6B-activated models to fit a 2-core box: 4.2 M activated,
         * 51 M total (make bench-models). Segment 2048 as in the paper. */
        const char *kind = name + 6;
        c->d_model = 256; c->n_layers = 4; c->n_heads = 4; c->head_dim = 64;
        c->segment_len = 2048; c->ffn_hidden = 1024; c->moe_experts = 32;
        c->moe_hidden = 512;
        c->memory = (us_memory_config){ .heads = 2, .n_keys = 606, .k_dim = 64,
            .tucker_rank = 2, .knn = 32, .candidates = 32, .v_dim = 256, .ive_groups = 4,
            .skip = 1, .softmax = 1, .query_norm = US_QNORM_LAYERNORM,
            .tucker_cores = 1 };
        bool dense = strcmp(kind, "dense") == 0, moe = strcmp(kind, "moe") == 0;
        bool ultramem = strcmp(kind, "ultramem") == 0;
        if (!dense && !moe && !ultramem)
            return us_err_set(err, US_EINVAL, "unknown preset '%s' (tiny, small, bench-dense, "
                              "bench-moe, bench-ultramem)", name);
        for (uint32_t l = 0; l < c->n_layers; l++)
            c->layers[l] = dense ? US_LAYER_DENSE : moe ? US_LAYER_MOE
                         : (l % 2) ? US_LAYER_MEMORY : US_LAYER_DENSE;
        if (ultramem)   /* wider dense layers: same activated parameters as dense */
            c->ffn_hidden = 1216;
    } else {
        return us_err_set(err, US_EINVAL, "unknown preset '%s' (tiny, small, bench-dense, "
                          "bench-moe, bench-ultramem)", name);
    }
    return us_model_config_validate(c, name, err);
}

uint32_t us_model_config_memory_layers(const us_model_config *c)
{
    uint32_t n = 0;
    for (uint32_t l = 0; l < c->n_layers; l++)
        n += c->layers[l] == US_LAYER_MEMORY;
    return n;
}

int us_model_config_memory_layer_index(const us_model_config *c, uint32_t table)
{
    uint32_t n = 0;
    for (uint32_t l = 0; l < c->n_layers; l++)
        if (c->layers[l] == US_LAYER_MEMORY && n++ == table)
            return (int)l;
    return -1;
}

uint32_t us_model_config_lookup_pairs(const us_model_config *c)
{
    return c->memory.heads * c->memory.knn * c->memory.tucker_cores;
}

uint32_t us_model_config_lookup_groups(const us_model_config *c)
{
    return c->memory.ive_groups * c->memory.tucker_cores;
}

uint64_t us_model_config_table_rows(const us_model_config *c)
{
    return (uint64_t)c->memory.n_keys * c->memory.n_keys / c->memory.ive_groups;
}
