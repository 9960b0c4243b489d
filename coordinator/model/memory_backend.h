/*
 * memory_backend.h — how the model's memory layers fetch values.
 *
 * A memory layer computes, per token, knn (physical row, weight, IVE group)
 * triples and needs the grouped weighted sums
 *
 *   out_grouped[(t * n_groups + g) * v_dim + c] =
 *       sum over i with ive_group[t*k+i] == g of weights[t*k+i] * V[rows[t*k+i]][c]
 *
 * (exactly the contract of us_gather_sum_grouped in kernels/gather.h). Where
 * V lives is the backend's business: us_memory_local below serves tables
 * held in this process (a RAM array or an opened store) through
 * us_rows_view; a distributed backend (branch `lookup`) routes the same call
 * to shard ranks. table_id is the memory layer's order among the model's
 * memory layers (0, 1, ...), which is also its table id in a store.
 *
 * lookup returns US_OK or a negative US_E* code with *err naming the table
 * and row; out_grouped is then unspecified. table_info reports a table's
 * shape so the model can refuse a store that does not match it.
 *
 * Asynchronous backends (a distributed lookup in collective rounds, e.g.
 * us_lookup_begin/us_lookup_end of branch `lookup`) set lookup_begin and
 * lookup_end instead of (or besides) lookup: the model begins a table's
 * lookup at its memory layer and ends it `skip` layers later, computing the
 * layers in between meanwhile. At most one lookup per table is in flight;
 * the row/weight/group arrays stay valid and unchanged until its end; every
 * successful begin is followed by exactly one end, also on error paths (so
 * collective rounds stay matched across ranks). When lookup_begin is set it
 * is used; lookup is then optional.
 */
#ifndef US_MEMORY_BACKEND_H
#define US_MEMORY_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"
#include "shard/store.h"

typedef struct us_memory_backend {
    void *ctx;
    int (*lookup)(void *ctx, int table_id, const uint64_t *rows, const float *weights,
                  const uint8_t *ive_group, size_t n_tokens, size_t k, int n_groups,
                  float *out_grouped, us_err *err);
    int (*table_info)(void *ctx, int table_id, uint64_t *rows, uint32_t *dim, us_err *err);
    int (*lookup_begin)(void *ctx, int table_id, const uint64_t *rows, const float *weights,
                        const uint8_t *ive_group, size_t n_tokens, size_t k, int n_groups,
                        us_err *err);
    int (*lookup_end)(void *ctx, int table_id, float *out_grouped, us_err *err);
} us_memory_backend;

/* In-process backend over borrowed row views (one per table id). When the
 * views come from a store, every lookup's rows are CRC-checked per block
 * first (us_store_check_rows): a bad block fails the lookup with
 * US_ECORRUPT naming table, block and file. */
typedef struct us_memory_local {
    const us_rows_view *tables;   /* [n_tables], borrowed */
    int n_tables;
    int n_threads;                /* for the gather; <= 0 = OpenMP default */
    const us_store *store;        /* NULL, or the store the views are from */
    const size_t *store_tables;   /* [n_tables]: each view's table index in store */
} us_memory_local;

/* Fills *backend with the local implementation over *local (borrowed); its
 * lookup and table_info return US_ENOTFOUND for a table id not in *local and
 * the gather's codes (kernels/gather.h) prefixed with the table.
 * Returns: nothing; cannot fail. */
void us_memory_local_backend(us_memory_backend *backend, us_memory_local *local);

#endif
