/*
 * model_store.h — a model's memory tables in a UltraShard store (shard/store.h).
 *
 * Memory table t (the t-th memory layer) is the store table with id t and
 * name "table_<t>", rows n_keys^2 / ive_groups, dim v_dim. Its values are
 * the synthetic values of (seed, t, row) (shard/synthetic.h) stored in the
 * chosen dtype with the store's rules, so an f32 store holds exactly the
 * numbers of the model directory's values/table_<t>.npy.
 *
 * us_model_store_build writes such a store (crash-safe: staged directory,
 * renamed when complete; an existing store is refused). us_model_store_open
 * opens one in this process (all shards, mmap) and serves it through the
 * local memory backend; us_model_set_backend then checks each table's
 * shape against the model and names the table on a mismatch.
 */
#ifndef US_MODEL_STORE_H
#define US_MODEL_STORE_H

#include <stdint.h>

#include "coordinator/model/memory_backend.h"
#include "coordinator/model/model_config.h"
#include "kernels/convert.h"
#include "kernels/us_status.h"
#include "shard/store.h"

/* Block size of model stores: small tables get small blocks so that their
 * rows spread over shards (a table of 64 rows would be one block otherwise).
 * Returns: the block_bits for a table of `rows` rows; cannot fail. */
uint32_t us_model_store_block_bits(uint64_t rows);

/* Writes the store of cfg's memory tables (see the top comment).
 * Returns: US_OK; US_EINVAL when cfg has no memory layer or an argument is
 * out of range; US_EEXIST when store_dir exists; the store writer's US_EIO /
 * US_ENOMEM (the staged directory is removed on error). */
int us_model_store_build(const char *store_dir, const us_model_config *cfg, uint64_t seed,
                         uint32_t shard_count, us_dtype dtype, us_err *err);

typedef struct us_model_store {
    us_store      *store;
    us_rows_view  *views;     /* [n_tables] */
    size_t        *indices;   /* [n_tables]: store table index of each view */
    us_memory_local local;
} us_model_store;

/* Index of memory table t in an open store: the table named "table_<t>",
 * else the one whose id is t.
 * Returns: US_OK with *index set; US_ENOTFOUND naming the store and table. */
int us_model_store_find(const us_store *store, uint32_t t, size_t *index, us_err *err);

/* Opens store_dir (all shards, mmap) and finds every memory table of cfg.
 * Returns: US_OK; the store's open errors (us_store_open: US_ENOTFOUND,
 * US_EIO, US_ECORRUPT, US_EVERSION, ...); US_ENOTFOUND naming the store and
 * table if one is missing; US_EUNSUPP for a synthetic table (no rows to
 * serve in-process); US_ENOMEM. *ms is closed on error. */
int us_model_store_open(us_model_store *ms, const char *store_dir, const us_model_config *cfg,
                        us_err *err);
/* Returns: nothing; cannot fail. */
void us_model_store_close(us_model_store *ms);
/* The local backend over the open store (borrowed). Returns: nothing; cannot fail. */
void us_model_store_backend(us_model_store *ms, us_memory_backend *backend);

#endif
