/* memory_dist.c — memory tables served by shard ranks (see memory_dist.h). */
#include "coordinator/memory_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/manifest.h"

/* Index in the manifest of memory table t: by name "table_<t>", else by id. */
static int find_table(const us_manifest *m, const char *store_dir, uint32_t t, us_err *err)
{
    char name[32];
    snprintf(name, sizeof name, "table_%u", t);
    int i = us_manifest_find(m, name);
    if (i < 0) {
        snprintf(name, sizeof name, "%u", t);
        i = us_manifest_find(m, name);
    }
    if (i < 0)
        return us_err_set(err, US_ENOTFOUND, "store %s has no table \"table_%u\" (id %u)",
                          store_dir, t, t);
    if (m->tables[i].synthetic)
        return us_err_set(err, US_EUNSUPP, "store %s: table \"table_%u\" is synthetic; a "
                          "model needs stored values", store_dir, t);
    return i;
}

static us_lookup_opts lookup_opts(const us_memory_dist_opts *opts)
{
    return (us_lookup_opts){ .mode = opts->mode, .max_tokens = opts->max_tokens,
                             .max_k = opts->k, .n_groups = opts->n_groups,
                             .cache_bytes = opts->cache_bytes, .n_threads = opts->n_threads };
}

/* This rank's part of open: manifest, shape checks, own shard files. */
static int open_local(us_memory_dist *d, const us_world *w, const char *store_dir,
                      uint32_t n_tables, const us_memory_dist_opts *opts, us_manifest *m,
                      uint64_t *max_msg, us_err *err)
{
    int rc = us_manifest_read(store_dir, m, err);
    if (rc != US_OK)
        return rc;
    if (m->shard_count != (uint32_t)w->n_shards)
        return us_err_set(err, US_EINVAL, "store %s has %u shards but this job has %d shard "
                          "ranks: run %u shard ranks (mpirun -n %u) or reshard the store",
                          store_dir, m->shard_count, w->n_shards, m->shard_count,
                          m->shard_count + (uint32_t)(w->size - w->n_shards));
    d->n_tables = n_tables;
    size_t n = n_tables ? n_tables : 1;
    d->tables = calloc(n, sizeof *d->tables);
    d->info = calloc(n, sizeof *d->info);
    d->views = calloc(n, sizeof *d->views);
    d->transports = calloc(n, sizeof *d->transports);
    if (d->tables == NULL || d->info == NULL || d->views == NULL || d->transports == NULL)
        return us_err_set(err, US_ENOMEM, "memory tables of %s", store_dir);
    us_lookup_opts lo = lookup_opts(opts);
    for (uint32_t t = 0; t < n_tables; t++) {
        int i = find_table(m, store_dir, t, err);
        if (i < 0)
            return i;
        const us_table_layout *tl = &m->tables[i];
        d->info[t] = (us_table_info){ .table_id = tl->table_id, .rows = tl->rows,
                                      .dim = tl->dim, .dtype = tl->dtype,
                                      .block_bits = tl->block_bits,
                                      .placement_seed = tl->placement_seed,
                                      .placement = US_PLACE_ROW };
        uint64_t b = us_lookup_max_msg_bytes(&d->info[t], &lo, w->n_shards);
        *max_msg = b > *max_msg ? b : *max_msg;
    }
    if (!w->is_shard)
        return US_OK;
    us_store_opts so = { .backend = US_BACKEND_MMAP, .shard_index = w->shard_index,
                         .expect_shards = w->n_shards };
    if ((rc = us_store_open(store_dir, &so, &d->store, err)) != US_OK)
        return us_err_prefix(err, "shard %d (rank %d)", w->shard_index, w->rank);
    return US_OK;
}

int us_memory_dist_open(us_memory_dist *d, const us_world *w, const char *store_dir,
                        uint32_t n_tables, const us_memory_dist_opts *opts, us_err *err)
{
    memset(d, 0, sizeof *d);
    d->world = w;
    if (w->n_coordinators != 1)
        return us_err_set(err, US_EINVAL, "distributed inference runs with one coordinator; "
                          "this job has %d", w->n_coordinators);
    /* Local checks first; every rank then learns whether all succeeded, so
     * a shard that cannot open its files does not leave the others waiting
     * in the collective transport start. */
    us_manifest m = {0};
    uint64_t max_msg = 0;
    int rc = open_local(d, w, store_dir, n_tables, opts, &m, &max_msg, err);
    us_manifest_free(&m);
    int ok = rc == US_OK, all_ok = 0;
    if (MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, w->comm) != MPI_SUCCESS && rc == US_OK)
        rc = us_err_set(err, US_EMPI, "rank %d: MPI_Allreduce at memory store open", w->rank);
    if (rc == US_OK && !all_ok)
        rc = us_err_set(err, US_EIO, "another rank could not open store %s (see its message)",
                        store_dir);
    if (rc != US_OK)
        goto fail;
    us_lookup_opts lo = lookup_opts(opts);
    us_transport_opts to = { .max_msg_bytes = max_msg };
    for (uint32_t t = 0; t < n_tables; t++) {
        if ((rc = us_transport_open(opts->transport ? opts->transport : "mpi", w, &to,
                                    &d->transports[t], err)) != US_OK)
            goto fail;
        us_rows_view *local = NULL;
        if (w->is_shard) {
            size_t index;
            char name[32];
            snprintf(name, sizeof name, "table_%u", t);
            if (us_store_find_table(d->store, name, &index, NULL) != US_OK) {
                snprintf(name, sizeof name, "%u", t);
                if ((rc = us_store_find_table(d->store, name, &index, err)) != US_OK)
                    goto fail;
            }
            if ((rc = us_store_view(d->store, index, &d->views[t], err)) != US_OK)
                goto fail;
            local = &d->views[t];
        }
        if ((rc = us_lookup_open(&d->tables[t], w, d->transports[t], &d->info[t], local, &lo,
                                 err)) != US_OK)
            goto fail;
    }
    return US_OK;

fail:
    us_memory_dist_close(d);
    return rc;
}

static int dist_lookup(void *ctx, int table_id, const uint64_t *rows, const float *weights,
                       const uint8_t *ive_group, size_t n_tokens, size_t k, int n_groups,
                       float *out_grouped, us_err *err)
{
    us_memory_dist *d = ctx;
    if (table_id < 0 || (uint32_t)table_id >= d->n_tables)
        return us_err_set(err, US_ERANGE, "memory table %d: the store serves %u tables",
                          table_id, d->n_tables);
    /* A table out of cycle order would pair this round with another table's
     * round on the shards: bring the cycle to this table first. */
    while (d->next_table != (uint32_t)table_id) {
        int rc = us_lookup_run(d->tables[d->next_table], NULL, NULL, err);
        d->next_table = (d->next_table + 1) % d->n_tables;
        if (rc != US_OK)
            return rc;
    }
    (void)n_groups;   /* fixed at open: the lookup's n_groups */
    us_lookup_batch batch = { .n_tokens = (uint32_t)n_tokens, .k = (uint32_t)k,
                              .rows = rows, .weights = weights, .groups = ive_group };
    int rc = us_lookup_run(d->tables[table_id], &batch, out_grouped, err);
    d->next_table = (d->next_table + 1) % d->n_tables;
    return rc;
}

static int dist_table_info(void *ctx, int table_id, uint64_t *rows, uint32_t *dim, us_err *err)
{
    us_memory_dist *d = ctx;
    if (table_id < 0 || (uint32_t)table_id >= d->n_tables)
        return us_err_set(err, US_ENOTFOUND, "memory table %d: the store serves %u tables",
                          table_id, d->n_tables);
    *rows = d->info[table_id].rows;
    *dim = d->info[table_id].dim;
    return US_OK;
}

void us_memory_dist_backend(us_memory_dist *d, us_memory_backend *backend)
{
    memset(backend, 0, sizeof *backend);
    backend->ctx = d;
    backend->lookup = dist_lookup;
    backend->table_info = dist_table_info;
}

int us_memory_dist_sync(us_memory_dist *d, us_err *err)
{
    while (d->next_table != 0) {
        int rc = us_lookup_run(d->tables[d->next_table], NULL, NULL, err);
        d->next_table = (d->next_table + 1) % d->n_tables;
        if (rc != US_OK)
            return rc;
    }
    return US_OK;
}

int us_memory_dist_finish(us_memory_dist *d, us_err *err)
{
    int rc = us_memory_dist_sync(d, err);
    for (uint32_t t = 0; rc == US_OK && t < d->n_tables; t++)
        rc = us_lookup_finish(d->tables[t], err);
    d->finished = true;
    return rc;
}

int us_memory_dist_serve(us_memory_dist *d, us_err *err)
{
    if (d->world->is_coordinator)
        return us_err_set(err, US_EINVAL, "rank %d is a coordinator: it runs the model",
                          d->world->rank);
    for (;;) {
        bool all = true;
        for (uint32_t t = 0; t < d->n_tables; t++) {
            if (us_lookup_stopped(d->tables[t]))
                continue;
            all = false;
            int rc = us_lookup_run(d->tables[t], NULL, NULL, err);
            if (rc != US_OK)
                return us_err_prefix(err, "shard %d serving table %u", d->world->shard_index, t);
        }
        if (all)
            return US_OK;
    }
}

void us_memory_dist_close(us_memory_dist *d)
{
    for (uint32_t t = 0; d->tables && t < d->n_tables; t++)
        if (d->tables[t] != NULL)
            us_lookup_close(d->tables[t]);
    for (uint32_t t = 0; d->transports && t < d->n_tables; t++)
        if (d->transports[t] != NULL)
            us_transport_close(d->transports[t]);
    free(d->tables);
    free(d->info);
    free(d->views);
    free(d->transports);
    if (d->store != NULL)
        us_store_close(d->store);
    memset(d, 0, sizeof *d);
}
