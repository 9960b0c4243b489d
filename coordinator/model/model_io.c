/* model_io.c — model directories and RAM value tables: see model_io.h. */
#include "coordinator/model/model_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/hash.h"
#include "shard/durable.h"
#include "shard/synthetic.h"
#include "shard/tensorfile.h"

#define TABLE_BLOCK_BITS 12

static int path_join(char *out, size_t cap, const char *dir, const char *name, us_err *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return us_err_set(err, US_EINVAL, "%s/%s: path too long", dir, name);
    return US_OK;
}

static int ensure_dir(const char *dir, us_err *err)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            return US_OK;
        return us_err_set(err, US_EINVAL, "%s: exists and is not a directory", dir);
    }
    return us_err_set(err, US_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
}

static void shape_text(char *out, size_t cap, int ndim, const uint64_t *shape)
{
    size_t len = 0;
    len += (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%llu", i ? ", " : "",
                                (unsigned long long)shape[i]);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
}

/* Whether tensor t can be read as parameter p: f32 and the same shape, or a
 * core stored before MCS ([Hm][r][r], the bytes of [Hm][1][r][r]). */
static bool shape_matches(const us_tensor_info *t, const us_param_desc *p)
{
    if (t->dtype != US_DTYPE_F32)
        return false;
    if (p->ndim == 4 && p->shape[1] == 1 && t->ndim == 3 && strstr(p->name, ".mem.core"))
        return t->shape[0] == p->shape[0] && t->shape[1] == p->shape[2] &&
               t->shape[2] == p->shape[3];
    bool same = t->ndim == p->ndim;
    for (int k = 0; same && k < p->ndim; k++)
        same = t->shape[k] == p->shape[k];
    return same;
}

int us_model_load(us_model *m, const char *dir, us_err *err)
{
    char path[4096];
    us_model_config cfg;
    int rc;
    if ((rc = path_join(path, sizeof path, dir, "config.json", err)) != US_OK)
        return rc;
    if ((rc = us_model_config_load(&cfg, path, err)) != US_OK)
        return rc;
    if ((rc = us_model_alloc(m, &cfg, err)) != US_OK)
        return rc;
    us_tensor_file *tf = NULL;
    if ((rc = path_join(path, sizeof path, dir, "weights.safetensors", err)) != US_OK ||
        (rc = us_tf_open(path, &tf, err)) != US_OK)
        goto fail;
    for (size_t i = 0; i < m->n_descs; i++) {
        const us_param_desc *p = &m->descs[i];
        const us_tensor_info *t;
        if ((rc = us_tf_find(tf, p->name, &t, err)) != US_OK)
            goto fail;
        if (!shape_matches(t, p)) {
            char got[128], want[128];
            shape_text(got, sizeof got, t->ndim, t->shape);
            shape_text(want, sizeof want, p->ndim, p->shape);
            rc = us_err_set(err, US_EINVAL, "%s: tensor '%s' is %s %s, config.json wants "
                            "f32 %s", path, p->name, us_dtype_name(t->dtype) ?
                            us_dtype_name(t->dtype) : "?", got, want);
            goto fail;
        }
        if ((rc = us_tf_read(tf, t, m->params + p->offset, p->count * sizeof(float), err))
            != US_OK)
            goto fail;
    }
    if (us_tf_count(tf) != m->n_descs) {
        for (size_t i = 0; i < us_tf_count(tf); i++) {
            const char *name = us_tf_tensor(tf, i)->name;
            if (us_model_param(m, name) == NULL) {
                rc = us_err_set(err, US_EINVAL, "%s: unexpected tensor '%s' (not a parameter "
                                "of the model in config.json)", path, name);
                goto fail;
            }
        }
    }
    us_tf_close(tf);
    return US_OK;
fail:
    us_tf_close(tf);
    us_model_free(m);
    return rc;
}

int us_model_save(const us_model *m, const char *dir, bool overwrite, us_err *err)
{
    char path[4096];
    int rc;
    if ((rc = ensure_dir(dir, err)) != US_OK)
        return rc;
    us_tensor_desc *descs = calloc(m->n_descs, sizeof *descs);
    char *json = us_model_config_to_json(&m->cfg);
    if (descs == NULL || json == NULL) {
        rc = us_err_set(err, US_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (size_t i = 0; i < m->n_descs; i++) {
        const us_param_desc *p = &m->descs[i];
        descs[i].name = p->name;
        descs[i].dtype = US_DTYPE_F32;
        descs[i].ndim = p->ndim;
        memcpy(descs[i].shape, p->shape, sizeof p->shape);
        descs[i].data = m->params + p->offset;
    }
    if ((rc = path_join(path, sizeof path, dir, "weights.safetensors", err)) != US_OK ||
        (rc = us_tf_write(path, US_TF_SAFETENSORS, descs, m->n_descs, overwrite, err)) != US_OK)
        goto done;
    /* config.json last: a directory with a config has complete weights. */
    if ((rc = path_join(path, sizeof path, dir, "config.json", err)) != US_OK)
        goto done;
    us_durable_file f;
    if ((rc = us_durable_open(&f, path, overwrite, err)) != US_OK)
        goto done;
    if ((rc = us_durable_write(&f, json, strlen(json), err)) != US_OK ||
        (rc = us_durable_write(&f, "\n", 1, err)) != US_OK) {
        us_durable_abort(&f);
        goto done;
    }
    rc = us_durable_commit(&f, err);
done:
    free(json);
    free(descs);
    return rc;
}

/* SplitMix64 stream -> standard normals (Box-Muller). */
static double uniform01(uint64_t *s)   /* (0, 1] */
{
    return ((us_splitmix64_next(s) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

void us_model_init_random(us_model *m, uint64_t seed)
{
    for (size_t i = 0; i < m->n_descs; i++) {
        const us_param_desc *p = &m->descs[i];
        float *w = m->params + p->offset;
        if (p->init_std < 0) {
            for (uint64_t j = 0; j < p->count; j++)
                w[j] = -p->init_std;
            continue;
        }
        uint64_t s = seed * 0x2545f4914f6cdd1dull + i;
        for (uint64_t j = 0; j < p->count; j += 2) {
            double r = sqrt(-2.0 * log(uniform01(&s))), a = 2.0 * M_PI * uniform01(&s);
            w[j] = (float)(r * cos(a)) * p->init_std;
            if (j + 1 < p->count)
                w[j + 1] = (float)(r * sin(a)) * p->init_std;
        }
    }
}

int us_value_tables_write(const char *dir, const us_model_config *cfg, uint64_t seed,
                          bool overwrite, us_err *err)
{
    char vdir[4096], path[4096], name[64];
    int rc;
    uint32_t n = us_model_config_memory_layers(cfg);
    if (n == 0)
        return US_OK;
    if ((rc = ensure_dir(dir, err)) != US_OK ||
        (rc = path_join(vdir, sizeof vdir, dir, "values", err)) != US_OK ||
        (rc = ensure_dir(vdir, err)) != US_OK)
        return rc;
    const uint64_t rows = us_model_config_table_rows(cfg);
    const uint32_t dim = cfg->memory.v_dim;
    float *row = malloc(dim * sizeof(float));
    if (row == NULL)
        return us_err_set(err, US_ENOMEM, "%s: out of memory", vdir);
    for (uint32_t t = 0; t < n && rc == US_OK; t++) {
        snprintf(name, sizeof name, "table_%u.npy", t);
        if ((rc = path_join(path, sizeof path, vdir, name, err)) != US_OK)
            break;
        snprintf(name, sizeof name, "table_%u", t);
        us_tensor_desc desc = { .name = name, .dtype = US_DTYPE_F32, .ndim = 2,
                                .shape = { rows, dim } };
        us_tf_writer w;
        if ((rc = us_tf_writer_open(&w, path, US_TF_NPY, &desc, 1, overwrite, err)) != US_OK)
            break;
        for (uint64_t r = 0; r < rows && rc == US_OK; r++) {
            us_synth_row_f32(row, seed, t, r, dim);
            rc = us_tf_writer_append(&w, row, dim * sizeof(float), err);
        }
        if (rc == US_OK)
            rc = us_tf_writer_commit(&w, err);
        else
            us_tf_writer_abort(&w);
    }
    free(row);
    return rc;
}

void us_value_tables_free(us_value_tables *vt)
{
    for (int t = 0; t < vt->n_tables; t++) {
        if (vt->data)
            free(vt->data[t]);
        if (vt->blocks)
            free((void *)vt->blocks[t]);
    }
    free(vt->data);
    free(vt->blocks);
    free(vt->views);
    memset(vt, 0, sizeof *vt);
}

int us_value_tables_load(us_value_tables *vt, const char *dir, const us_model_config *cfg,
                         us_err *err)
{
    memset(vt, 0, sizeof *vt);
    int n = (int)us_model_config_memory_layers(cfg);
    const uint64_t want_rows = us_model_config_table_rows(cfg);
    const uint32_t dim = cfg->memory.v_dim;
    const uint64_t n_blocks = (want_rows + (1u << TABLE_BLOCK_BITS) - 1) >> TABLE_BLOCK_BITS;
    vt->data = calloc((size_t)n + 1, sizeof *vt->data);
    vt->blocks = calloc((size_t)n + 1, sizeof *vt->blocks);
    vt->views = calloc((size_t)n + 1, sizeof *vt->views);
    if (vt->data == NULL || vt->blocks == NULL || vt->views == NULL) {
        us_value_tables_free(vt);
        return us_err_set(err, US_ENOMEM, "value tables: out of memory");
    }
    vt->n_tables = n;
    int rc = US_OK;
    for (int t = 0; t < n; t++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/values/table_%d.npy", dir, t);
        us_tensor_file *tf = NULL;
        const us_tensor_info *info;
        if ((rc = us_tf_open(path, &tf, err)) != US_OK ||
            (rc = us_tf_find(tf, NULL, &info, err)) != US_OK) {
            us_tf_close(tf);
            goto fail;
        }
        if (info->dtype != US_DTYPE_F32 || info->ndim != 2 || info->shape[0] != want_rows ||
            info->shape[1] != dim) {
            char got[128];
            shape_text(got, sizeof got, info->ndim, info->shape);
            rc = us_err_set(err, US_EINVAL, "%s: table is %s %s, the model (memory layer %d) "
                            "wants f32 [%llu, %u]", path, us_dtype_name(info->dtype) ?
                            us_dtype_name(info->dtype) : "?", got,
                            us_model_config_memory_layer_index(cfg, (uint32_t)t),
                            (unsigned long long)want_rows, dim);
            us_tf_close(tf);
            goto fail;
        }
        vt->data[t] = malloc(info->nbytes ? info->nbytes : 1);
        vt->blocks[t] = calloc(n_blocks ? n_blocks : 1, sizeof(uint8_t *));
        if (vt->data[t] == NULL || vt->blocks[t] == NULL) {
            rc = us_err_set(err, US_ENOMEM, "%s: out of memory", path);
            us_tf_close(tf);
            goto fail;
        }
        rc = us_tf_read(tf, info, vt->data[t], info->nbytes, err);
        us_tf_close(tf);
        if (rc != US_OK)
            goto fail;
        const uint8_t **blocks = (const uint8_t **)vt->blocks[t];
        for (uint64_t b = 0; b < n_blocks; b++)
            blocks[b] = (const uint8_t *)(vt->data[t] + (b << TABLE_BLOCK_BITS) * dim);
        vt->views[t] = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = dim,
            .block_bits = TABLE_BLOCK_BITS, .row_stride_bytes = dim * sizeof(float),
            .rows = want_rows, .n_blocks = n_blocks, .blocks = blocks };
    }
    vt->local = (us_memory_local){ .tables = vt->views, .n_tables = n, .n_threads = 0 };
    return US_OK;
fail:
    us_value_tables_free(vt);
    return rc;
}

void us_value_tables_backend(us_value_tables *vt, us_memory_backend *backend)
{
    us_memory_local_backend(backend, &vt->local);
}
