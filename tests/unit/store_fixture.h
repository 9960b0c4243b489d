/* store_fixture.h — builds small stores for unit tests (values from synthetic.h, seed 99). */
#ifndef US_STORE_FIXTURE_H
#define US_STORE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "shard/manifest.h"

#define US_FIXTURE_SEED 99

/* A layout with placement seed 5 (derived fields filled by us_fixture_build). */
us_table_layout us_fixture_table(uint32_t id, const char *name, uint64_t rows, uint32_t dim,
                                 us_dtype dtype, uint32_t block_bits);

/* Writes a store of these tables at dir with `shards` shards; row r of table
 * t holds us_synth_row(US_FIXTURE_SEED, t.table_id, r) in t's dtype
 * (synthetic tables: layout only). Returns 0, or -1 after printing why. */
int us_fixture_build(const char *dir, us_table_layout *tables, size_t n, uint32_t shards);

#endif
