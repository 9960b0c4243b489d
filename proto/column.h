/*
 * column.h — column (dimension-wise) placement: which columns a shard holds.
 *
 * With column placement every shard holds a contiguous slice of every row's
 * columns: dim is split into n_shards slices whose sizes differ by at most
 * one, lower shards taking the remainder. Like placement.h, a pure function
 * both coordinators and shards compute; it needs dim >= n_shards.
 */
#ifndef US_COLUMN_H
#define US_COLUMN_H

#include <stdint.h>

/* Slice of shard `shard` (0 <= shard < n_shards): [*begin, *begin + *count).
 * Returns: nothing; *begin and *count describe the slice.
 */
void us_column_slice(uint32_t dim, int n_shards, int shard, uint32_t *begin,
                     uint32_t *count);

#endif
