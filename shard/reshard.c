/* reshard.c — copy a store to a new shard count with a per-row proof (see reshard.h). */
#include "shard/reshard.h"

#include <string.h>
#include <time.h>

#include "proto/placement.h"
#include "shard/crc32c.h"
#include "shard/store.h"
#include "shard/store_write.h"

typedef struct copy_ctx {
    const us_store *old;
    size_t          table;
} copy_ctx;

static int copy_block(void *vctx, const us_table_layout *t, uint64_t block, uint8_t *slot,
                      us_err *err)
{
    copy_ctx *c = vctx;
    const uint8_t *src = us_store_block(c->old, c->table, block);
    if (src == NULL)
        return us_err_set(err, US_ENOTFOUND, "table '%s' block %llu missing from the old store",
                          t->name, (unsigned long long)block);
    memcpy(slot, src, t->block_slot_bytes);
    return US_OK;
}

static uint32_t row_crc(const us_table_layout *t, const uint8_t *slot, uint64_t r)
{
    uint32_t crc = us_crc32c(0, slot + r * t->row_bytes, t->row_bytes);
    if (t->dtype == US_DTYPE_INT8)
        crc = us_crc32c(crc, slot + t->scales_offset_bytes + 4 * r, 4);
    return crc;
}

/* Step 3: every row of every stored table, old vs new. */
static int prove(const us_store *old, const us_store *neu, us_reshard_stats *st, us_err *err)
{
    const us_manifest *m = us_store_manifest(old);
    for (size_t i = 0; i < m->n_tables; i++) {
        const us_table_layout *t = &m->tables[i];
        if (t->synthetic)
            continue;
        for (uint64_t b = 0; b < t->n_blocks; b++) {
            const uint8_t *a = us_store_block(old, i, b), *n = us_store_block(neu, i, b);
            if (a == NULL || n == NULL)
                return us_err_set(err, US_ECORRUPT, "reshard proof: table '%s' block %llu "
                                  "missing from the %s store", t->name, (unsigned long long)b,
                                  a == NULL ? "old" : "new");
            uint64_t rows = us_layout_block_rows(t, b);
            for (uint64_t r = 0; r < rows; r++) {
                uint32_t ca = row_crc(t, a, r), cn = row_crc(t, n, r);
                st->old_digest += ca;
                st->new_digest += cn;
                st->rows_checked++;
                if (ca != cn)
                    st->rows_differ++;
            }
        }
    }
    if (st->rows_differ != 0 || st->old_digest != st->new_digest)
        return us_err_set(err, US_ECORRUPT, "reshard proof failed: %llu of %llu rows differ",
                          (unsigned long long)st->rows_differ,
                          (unsigned long long)st->rows_checked);
    return US_OK;
}

int us_reshard(const char *src, const char *dst, uint32_t new_shards, us_reshard_stats *stats,
               us_err *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    us_reshard_stats st = { .new_shards = new_shards };
    if (new_shards < 1 || new_shards > US_MAX_SHARDS)
        return us_err_set(err, US_EINVAL, "reshard: shard count %u outside [1, %d]",
                          new_shards, US_MAX_SHARDS);
    us_store_opts all = { .backend = US_BACKEND_MMAP, .shard_index = US_STORE_ALL_SHARDS,
                          .verify = true };
    us_store *old = NULL, *neu = NULL;
    int rc = us_store_open(src, &all, &old, err);
    if (rc != US_OK)
        return us_err_prefix(err, "reshard: old store");
    const us_manifest *om = us_store_manifest(old);
    st.old_shards = om->shard_count;
    char stage[4096];
    us_manifest nm = {0};
    bool staged = false;
    if ((rc = us_stage_begin(dst, stage, sizeof stage, err)) != US_OK)
        goto done;
    staged = true;
    if ((rc = us_manifest_alloc(&nm, new_shards, om->n_tables, err)) != US_OK)
        goto done;
    for (size_t i = 0; i < om->n_tables && rc == US_OK; i++) {
        const us_table_layout *t = &om->tables[i];
        if ((rc = us_manifest_set_table(&nm, i, t, err)) != US_OK)
            break;
        if (t->synthetic)
            continue;
        copy_ctx ctx = { old, i };
        for (uint32_t s = 0; s < new_shards && rc == US_OK; s++) {
            uint64_t bytes = 0;
            /* the new manifest's layout: the files carry the new store's id */
            rc = us_shard_file_write(stage, &nm.tables[i], new_shards, s, copy_block, &ctx,
                                     nm.block_crc[i], &bytes, err);
            st.bytes_written += bytes;
        }
        for (uint64_t b = 0; b < t->n_blocks && rc == US_OK; b++) {
            st.blocks_total++;
            st.blocks_moved += us_placement_shard(t->table_id, b, t->placement_seed,
                                                  (int)om->shard_count) !=
                               us_placement_shard(t->table_id, b, t->placement_seed,
                                                  (int)new_shards);
            if (nm.block_crc[i][b] != om->block_crc[i][b])
                rc = us_err_set(err, US_ECORRUPT, "reshard: table '%s' block %llu changed "
                                "while copying (CRC 0x%08x, was 0x%08x)", t->name,
                                (unsigned long long)b, nm.block_crc[i][b], om->block_crc[i][b]);
        }
    }
    if (rc == US_OK)
        rc = us_manifest_write(stage, &nm, err);
    if (rc == US_OK)
        rc = us_store_open(stage, &all, &neu, err);
    if (rc == US_OK)
        rc = prove(old, neu, &st, err);
    us_store_close(neu);
    if (rc == US_OK && (rc = us_stage_commit(stage, dst, err)) == US_OK)
        staged = false;
done:
    if (staged)
        us_stage_abort(stage);
    us_manifest_free(&nm);
    us_store_close(old);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    st.seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (stats)
        *stats = st;
    return rc;
}
