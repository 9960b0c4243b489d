/* store_fixture.c — see store_fixture.h. */
#include "tests/unit/store_fixture.h"

#include <stdio.h>
#include <string.h>

#include "shard/store_write.h"
#include "shard/synthetic.h"

us_table_layout us_fixture_table(uint32_t id, const char *name, uint64_t rows, uint32_t dim,
                                 us_dtype dtype, uint32_t block_bits)
{
    return (us_table_layout){ .table_id = id, .name = name, .rows = rows, .dim = dim,
                              .dtype = dtype, .block_bits = block_bits, .placement_seed = 5 };
}

static int fill_synth(void *ctx, const us_table_layout *t, uint64_t block, uint8_t *slot,
                      us_err *err)
{
    (void)ctx;
    uint64_t rows = us_layout_block_rows(t, block);
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t row = (block << t->block_bits) + r;
        float scale = 0;
        int rc = us_synth_row(slot + r * t->row_bytes, &scale, t->dtype, US_FIXTURE_SEED,
                              t->table_id, row, t->dim, err);
        if (rc != US_OK)
            return rc;
        if (t->dtype == US_DTYPE_INT8)
            memcpy(slot + t->scales_offset_bytes + 4 * r, &scale, 4);
    }
    return US_OK;
}

int us_fixture_build(const char *dir, us_table_layout *tables, size_t n, uint32_t shards)
{
    us_err err = {0};
    char stage[4096];
    us_manifest m = {0};
    int rc = us_stage_begin(dir, stage, sizeof stage, &err);
    if (rc == US_OK)
        rc = us_manifest_alloc(&m, shards, n, &err);
    for (size_t i = 0; i < n && rc == US_OK; i++) {
        if ((rc = us_table_layout_init(&tables[i], &err)) != US_OK ||
            (rc = us_manifest_set_table(&m, i, &tables[i], &err)) != US_OK)
            break;
        for (uint32_t s = 0; s < shards && rc == US_OK && !tables[i].synthetic; s++)
            rc = us_shard_file_write(stage, &m.tables[i], shards, s, fill_synth, NULL,
                                     m.block_crc[i], NULL, &err);
    }
    if (rc == US_OK)
        rc = us_manifest_write(stage, &m, &err);
    if (rc == US_OK)
        rc = us_stage_commit(stage, dir, &err);
    us_manifest_free(&m);
    if (rc != US_OK)
        fprintf(stderr, "fixture store '%s': %s\n", dir, err.msg);
    return rc == US_OK ? 0 : -1;
}
