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
    /* Optional (default false): UltraMem's LayerNorm on the queries. */
    const cJSON *qn = cJSON_GetObjectItemCaseSensitive(mem, "query_norm");
    if (qn != NULL && !cJSON_IsBool(qn))
        return us_err_set(err, US_EINVAL, "%s: field 'memory.query_norm' must be true or "
                          "false", what);
    m->query_norm = cJSON_IsTrue(qn);
    return US_OK;
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
    return US_OK;
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
    cJSON_AddBoolToObject(mem, "query_norm", c->memory.query_norm != 0);
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
            .skip = 1, .softmax = 1, .query_norm = 1 };
        c->n_layers = 4;
        us_layer_kind kinds[4] = { US_LAYER_DENSE, US_LAYER_MEMORY, US_LAYER_MOE,
                                   US_LAYER_DENSE };
        memcpy(c->layers, kinds, sizeof kinds);
    } else if (strcmp(name, "small") == 0) {
        c->d_model = 256; c->n_heads = 4; c->head_dim = 64; c->segment_len = 128;
        c->ffn_hidden = 768; c->moe_experts = 8; c->moe_hidden = 384;
        c->memory = (us_memory_config){ .heads = 2, .n_keys = 256, .k_dim = 64,
            .tucker_rank = 2, .knn = 16, .candidates = 8, .v_dim = 128, .ive_groups = 4,
            .skip = 1, .softmax = 1, .query_norm = 1 };
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
            .skip = 1, .softmax = 1, .query_norm = 1 };
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

uint64_t us_model_config_table_rows(const us_model_config *c)
{
    return (uint64_t)c->memory.n_keys * c->memory.n_keys / c->memory.ive_groups;
}
