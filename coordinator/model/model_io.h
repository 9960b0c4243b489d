/*
 * model_io.h — a model directory on disk, and value tables held in RAM.
 *
 * A model directory holds
 *   config.json            the shape (model_config.h)
 *   weights.safetensors    every parameter of us_model_params(), f32
 *   values/table_<t>.npy   memory table t: f32 [n_keys^2 / G][v_dim]
 * Files are written crash-safely (shard/durable.h: temp, fsync, rename), so
 * a killed init-model leaves either the old file or the new one. Loading
 * checks every tensor's presence, dtype and shape against the config and
 * names the file and tensor on any mismatch; extra tensors are refused too
 * (they mean the config and weights disagree).
 *
 * Random init (us_model_init_random) is deterministic in the seed:
 * parameter p's values are N(0, init_std) from a SplitMix64 stream keyed by
 * (seed, p); norm gains are 1. Table values are the synthetic values of
 * shard/synthetic.h for (seed, table id), uniform in [-1, 1), so a
 * synthetic store with the same seed serves the same numbers.
 */
#ifndef US_MODEL_IO_H
#define US_MODEL_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/model/memory_backend.h"
#include "coordinator/model/model.h"
#include "kernels/us_status.h"

/* Loads dir/config.json and dir/weights.safetensors into *m (allocated).
 * Returns: US_OK; the config's errors (us_model_config_load); US_ENOMEM;
 * the tensor file's errors (US_ENOTFOUND, US_EIO, US_ECORRUPT, ...);
 * US_EINVAL naming the file and tensor for a missing, mis-typed, mis-shaped
 * or unexpected tensor or a path too long. *m is freed on error. */
int us_model_load(us_model *m, const char *dir, us_err *err);

/* Writes config.json and weights.safetensors of m into dir (created if
 * missing). Refuses to replace existing files unless overwrite.
 * Returns: US_OK; US_EINVAL when dir exists as a non-directory; US_EIO when
 * it cannot be created or a file cannot be written; US_EEXIST for an
 * existing file without overwrite (shard/durable.h); US_ENOMEM. */
int us_model_save(const us_model *m, const char *dir, bool overwrite, us_err *err);

/* Overwrites every parameter of m with the seeded init described above.
 * Returns: nothing; cannot fail. */
void us_model_init_random(us_model *m, uint64_t seed);

/* Writes dir/values/table_<t>.npy for every memory layer of cfg (none: no-op).
 * Returns: US_OK; as us_model_save (US_EINVAL, US_EIO, US_EEXIST, US_ENOMEM). */
int us_value_tables_write(const char *dir, const us_model_config *cfg, uint64_t seed,
                          bool overwrite, us_err *err);

/* Memory tables loaded into RAM, with views for the local backend. */
typedef struct us_value_tables {
    int n_tables;
    float **data;                  /* [n_tables] row-major f32 */
    const uint8_t ***blocks;       /* [n_tables][n_blocks] pointers into data */
    us_rows_view *views;           /* [n_tables] */
    us_memory_local local;
} us_value_tables;

/* Reads dir/values/table_<t>.npy for each memory layer of cfg; checks each
 * shape against the config.
 * Returns: US_OK; US_EINVAL naming the file on a dtype or shape mismatch;
 * the tensor file's errors (US_ENOTFOUND for a missing table, US_EIO,
 * US_ECORRUPT); US_ENOMEM. *vt is freed on error. */
int us_value_tables_load(us_value_tables *vt, const char *dir, const us_model_config *cfg,
                         us_err *err);
/* Returns: nothing; cannot fail. */
void us_value_tables_free(us_value_tables *vt);

/* Convenience: the local backend over loaded tables (borrowed).
 * Returns: nothing; cannot fail. */
void us_value_tables_backend(us_value_tables *vt, us_memory_backend *backend);

#endif
