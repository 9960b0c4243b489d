/* column.c — column placement slices (see column.h). */
#include "proto/column.h"

void us_column_slice(uint32_t dim, int n_shards, int shard, uint32_t *begin,
                     uint32_t *count)
{
    uint32_t base = dim / (uint32_t)n_shards, extra = dim % (uint32_t)n_shards;
    uint32_t s = (uint32_t)shard;
    *count = base + (s < extra ? 1u : 0u);
    *begin = s * base + (s < extra ? s : extra);
}
