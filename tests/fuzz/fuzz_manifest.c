/*
 * fuzz_manifest.c — libFuzzer harness: a store's manifest.pb through
 * us_manifest_read (shard/manifest.h), which reads from a directory.
 *
 * The input is the manifest without its trailing CRC-32C field: the harness
 * appends field 6 (fixed32) with the right checksum, so mutations reach the
 * protobuf decoder and the table checks instead of dying at the checksum
 * (the seeds are real manifests with those 5 bytes cut off). Inputs whose
 * first byte is '!' are written as they are, so the checksum test itself is
 * fuzzed too.
 */
#include <limits.h>

#include "shard/crc32c.h"
#include "shard/manifest.h"
#include "tests/fuzz/fuzz_util.h"

#define CRC_FIELD_TAG 0x35   /* field 6, wire type 5: the manifest's checksum */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), US_MANIFEST_FILE);
    if (size > 0 && data[0] == '!') {
        fuzz_write_file(path, data + 1, size - 1);
    } else {
        uint32_t crc = us_crc32c(0, data, size);
        uint8_t tail[5] = { CRC_FIELD_TAG, (uint8_t)crc, (uint8_t)(crc >> 8),
                            (uint8_t)(crc >> 16), (uint8_t)(crc >> 24) };
        fuzz_write_file2(path, data, size, tail, sizeof tail);
    }
    us_manifest m;
    us_err err = {0};
    int rc = us_manifest_read(fuzz_dir(), &m, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return 0;
    FUZZ_CHECK(m.shard_count >= 1 && m.shard_count <= US_MAX_SHARDS, "shard_count %u",
               m.shard_count);
    for (size_t i = 0; i < m.n_tables; i++) {
        const us_table_layout *t = &m.tables[i];
        FUZZ_CHECK(us_manifest_find(&m, t->name) >= 0, "table '%s' not found by name", t->name);
        FUZZ_CHECK(t->rows_per_block == 1ull << t->block_bits && t->n_blocks > 0,
                   "table '%s': bad derived layout", t->name);
        if (!t->synthetic) {
            /* the CRC array holds one entry per block: touch the last */
            volatile uint32_t last = m.block_crc[i][t->n_blocks - 1];
            (void)last;
        }
    }
    us_manifest_free(&m);
    return 0;
}
