/* memory_backend.c — the in-process memory backend: see memory_backend.h. */
#include "coordinator/model/memory_backend.h"

#include <string.h>

#include "kernels/gather.h"

static int local_lookup(void *ctx, int table_id, const uint64_t *rows, const float *weights,
                        const uint8_t *ive_group, size_t n_tokens, size_t k, int n_groups,
                        float *out_grouped, us_err *err)
{
    us_memory_local *local = ctx;
    if (table_id < 0 || table_id >= local->n_tables)
        return us_err_set(err, US_ENOTFOUND, "memory table %d: not loaded (%d tables)",
                          table_id, local->n_tables);
    int rc;
    if (local->store != NULL &&
        (rc = us_store_check_rows(local->store, local->store_tables[table_id], rows,
                                  n_tokens * k, err)) != US_OK)
        return us_err_prefix(err, "memory table %d", table_id);
    /* Small batches stay on the calling thread: thread wake-up costs more. */
    int threads = n_tokens * k < 4096 ? 1 : local->n_threads;
    rc = us_gather_sum_grouped(out_grouped, &local->tables[table_id], rows, weights,
                                   ive_group, n_tokens, k, n_groups, threads, err);
    if (rc != US_OK)
        us_err_prefix(err, "memory table %d", table_id);
    return rc;
}

static int local_table_info(void *ctx, int table_id, uint64_t *rows, uint32_t *dim,
                            us_err *err)
{
    us_memory_local *local = ctx;
    if (table_id < 0 || table_id >= local->n_tables)
        return us_err_set(err, US_ENOTFOUND, "memory table %d: not loaded (%d tables)",
                          table_id, local->n_tables);
    *rows = local->tables[table_id].rows;
    *dim = local->tables[table_id].dim;
    return US_OK;
}

void us_memory_local_backend(us_memory_backend *backend, us_memory_local *local)
{
    memset(backend, 0, sizeof *backend);
    backend->ctx = local;
    backend->lookup = local_lookup;
    backend->table_info = local_table_info;
}
