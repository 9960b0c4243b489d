/* model_store.c — model memory tables in a store: see model_store.h. */
#include "coordinator/model/model_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/manifest.h"
#include "shard/store_write.h"
#include "shard/synthetic.h"

typedef struct fill_ctx {
    uint64_t seed;
} fill_ctx;

/* Rows of one block from the synthetic values, in the table's dtype. */
static int fill_block(void *ctx, const us_table_layout *t, uint64_t block, uint8_t *slot,
                      us_err *err)
{
    const fill_ctx *fc = ctx;
    uint64_t rows = us_layout_block_rows(t, block);
    for (uint64_t r = 0; r < rows; r++) {
        float scale = 0.0f;
        uint64_t row = (block << t->block_bits) + r;
        int rc = us_synth_row(slot + r * t->row_bytes, &scale, t->dtype, fc->seed, t->table_id,
                              row, t->dim, err);
        if (rc != US_OK)
            return rc;
        if (t->dtype == US_DTYPE_INT8)
            memcpy(slot + t->scales_offset_bytes + 4 * r, &scale, sizeof scale);
    }
    return US_OK;
}

uint32_t us_model_store_block_bits(uint64_t rows)
{
    return rows <= 4096 ? 4 : 12;
}

int us_model_store_build(const char *store_dir, const us_model_config *cfg, uint64_t seed,
                         uint32_t shard_count, us_dtype dtype, us_err *err)
{
    const uint32_t n = us_model_config_memory_layers(cfg);
    if (n == 0)
        return us_err_set(err, US_EINVAL, "%s: the model has no memory layer to store",
                          store_dir);
    char stage[4096];
    int rc = us_stage_begin(store_dir, stage, sizeof stage, err);
    if (rc != US_OK)
        return rc;
    us_manifest m;
    if ((rc = us_manifest_alloc(&m, shard_count, n, err)) != US_OK) {
        us_stage_abort(stage);
        return rc;
    }
    char names[US_MODEL_MAX_LAYERS][32];
    fill_ctx fc = { seed };
    const uint64_t rows = us_model_config_table_rows(cfg);
    for (uint32_t t = 0; t < n && rc == US_OK; t++) {
        snprintf(names[t], sizeof names[t], "table_%u", t);
        us_table_layout layout = { .table_id = t, .name = names[t], .rows = rows,
            .dim = cfg->memory.v_dim, .dtype = dtype,
            .block_bits = us_model_store_block_bits(rows), .placement_seed = seed };
        if ((rc = us_table_layout_init(&layout, err)) != US_OK ||
            (rc = us_manifest_set_table(&m, t, &layout, err)) != US_OK)
            break;
        for (uint32_t s = 0; s < shard_count && rc == US_OK; s++)
            rc = us_shard_file_write(stage, &m.tables[t], shard_count, s, fill_block, &fc,
                                     m.block_crc[t], NULL, err);
    }
    if (rc == US_OK)
        rc = us_manifest_write(stage, &m, err);
    us_manifest_free(&m);
    if (rc == US_OK)
        rc = us_stage_commit(stage, store_dir, err);
    if (rc != US_OK)
        us_stage_abort(stage);
    return rc;
}

int us_model_store_find(const us_store *store, uint32_t t, size_t *index, us_err *err)
{
    char name[32];
    snprintf(name, sizeof name, "table_%u", t);
    if (us_store_find_table(store, name, index, NULL) == US_OK)
        return US_OK;
    snprintf(name, sizeof name, "%u", t);
    if (us_store_find_table(store, name, index, NULL) == US_OK)
        return US_OK;
    return us_err_set(err, US_ENOTFOUND, "store %s has no table \"table_%u\" (id %u)",
                      us_store_dir(store), t, t);
}

int us_model_store_open(us_model_store *ms, const char *store_dir, const us_model_config *cfg,
                        us_err *err)
{
    memset(ms, 0, sizeof *ms);
    const uint32_t n = us_model_config_memory_layers(cfg);
    us_store_opts opts = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS };
    int rc = us_store_open(store_dir, &opts, &ms->store, err);
    if (rc != US_OK)
        return rc;
    ms->views = calloc(n ? n : 1, sizeof *ms->views);
    ms->indices = calloc(n ? n : 1, sizeof *ms->indices);
    if (ms->views == NULL || ms->indices == NULL) {
        us_model_store_close(ms);
        return us_err_set(err, US_ENOMEM, "%s: out of memory", store_dir);
    }
    for (uint32_t t = 0; t < n; t++) {
        size_t index;
        if ((rc = us_model_store_find(ms->store, t, &index, err)) != US_OK) {
            us_model_store_close(ms);
            return us_err_prefix(err, "memory layer %d",
                                 us_model_config_memory_layer_index(cfg, t));
        }
        if ((rc = us_store_view(ms->store, index, &ms->views[t], err)) != US_OK) {
            us_model_store_close(ms);
            return us_err_prefix(err, "store %s", store_dir);
        }
        ms->indices[t] = index;
    }
    ms->local = (us_memory_local){ .tables = ms->views, .n_tables = (int)n, .n_threads = 0,
                                   .store = ms->store, .store_tables = ms->indices };
    return US_OK;
}

void us_model_store_close(us_model_store *ms)
{
    if (ms->store != NULL)
        us_store_close(ms->store);
    free(ms->views);
    free(ms->indices);
    memset(ms, 0, sizeof *ms);
}

void us_model_store_backend(us_model_store *ms, us_memory_backend *backend)
{
    us_memory_local_backend(backend, &ms->local);
}
