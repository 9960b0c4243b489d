/*
 * manifest.h — a store's table layouts and its manifest.pb file.
 *
 * Layout of one table (us_table_layout): rows are grouped into blocks of
 * 2^block_bits rows; block b of the table lives in shard
 * us_placement_shard(table_id, b, placement_seed, shard_count), in the file
 * "table-<id>.shard-<s>.bin" of the store directory. A shard file is a
 * sequence of fixed-size slots, one per block the shard owns, in ascending
 * block id order; each slot is a multiple of 4096 bytes, so every block
 * starts 4 KiB aligned (mmap-able, O_DIRECT-able). Inside a slot:
 *     [0, rows_per_block * row_bytes)      row data, row-major, no padding
 *     [scales_offset_bytes, +rows*4)        int8 only: per-row f32 scales
 *     zero padding up to block_slot_bytes
 * The last block of a table may hold fewer rows; its slot is full size.
 * A block's CRC-32C covers its valid rows' data, then (int8) their scales.
 * Synthetic tables have a layout but no files and no CRCs.
 *
 * manifest.pb is the StoreManifest protobuf (proto/ultrashard.proto),
 * written crash-safely (durable.h) and protected by a CRC-32C of all its
 * bytes in field 6, which is written last. us_manifest_read() checks that
 * CRC, the format version, every table's fields, that each table lists one
 * ShardFile per shard whose block ids are exactly the placement's, and that
 * file sizes match the slots. Any mismatch is US_ECORRUPT / US_EVERSION
 * naming the manifest and the table; nothing is half-loaded.
 */
#ifndef US_MANIFEST_H
#define US_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"

#define US_STORE_FORMAT_VERSION 1
#define US_MANIFEST_FILE "manifest.pb"
#define US_SLOT_ALIGN 4096u
#define US_MAX_BLOCK_BITS 24
#define US_MAX_DIM (1u << 20)
#define US_MAX_SHARDS 65536

typedef struct us_table_layout {
    uint32_t table_id;
    const char *name;           /* borrowed (owned by us_manifest when loaded) */
    uint64_t rows;
    uint32_t dim;
    us_dtype dtype;
    uint32_t block_bits;
    uint64_t placement_seed;
    bool     synthetic;
    uint64_t synthetic_seed;
    /* derived by us_table_layout_init */
    uint64_t rows_per_block;
    uint64_t n_blocks;
    size_t   row_bytes;
    uint64_t scales_offset_bytes;   /* 0 unless int8 */
    uint64_t block_slot_bytes;
} us_table_layout;

/* Checks the fields above the "derived" line and fills the derived ones.
 * US_EINVAL naming the table for zero/oversized dims, bad dtype, block bits.
 * Returns: US_OK, or US_EINVAL naming the table (t unchanged above the derived fields).
 */
int us_table_layout_init(us_table_layout *t, us_err *err);

/* Rows actually held by block b (the last block may be partial).
 * Returns: the row count, 0 for a block past the end.
 */
uint64_t us_layout_block_rows(const us_table_layout *t, uint64_t block);

/* CRC-32C of block b stored in slot (valid rows' data, then int8 scales).
 * Returns: the CRC-32C; cannot fail.
 */
uint32_t us_layout_block_crc(const us_table_layout *t, const uint8_t *slot, uint64_t block);

/* Blocks of table t owned by shard s, ascending: returns the count and, when
 * ids != NULL, writes them (caller sizes ids with a first call).
 * Returns: the number of blocks shard s owns.
 */
uint64_t us_layout_shard_blocks(const us_table_layout *t, uint32_t shard_count,
                                uint32_t shard, uint64_t *ids);

/* "table-<id>.shard-<s>.bin" into buf (>= 64 bytes).
 * Returns: nothing; truncates to cap.
 */
void us_shard_file_name(char *buf, size_t cap, uint32_t table_id, uint32_t shard);

typedef struct us_manifest {
    uint32_t format_version;
    uint32_t shard_count;
    size_t   n_tables;
    us_table_layout *tables;    /* [n_tables] */
    uint32_t **block_crc;       /* [n_tables][n_blocks]; NULL for synthetic tables */
    char   **names;             /* owned table names */
} us_manifest;

/* Allocates an empty manifest for n_tables tables (names copied by
 * us_manifest_set_table).
 * Returns: US_OK, or US_ENOMEM (m left empty).
 */
int us_manifest_alloc(us_manifest *m, uint32_t shard_count, size_t n_tables, us_err *err);
/* Copies layout (and its name) into slot i, allocates its CRC array.
 * Returns: US_OK, or US_ENOMEM naming the table.
 */
int us_manifest_set_table(us_manifest *m, size_t i, const us_table_layout *t, us_err *err);
/* Returns: nothing; leaves *m zeroed. */
void us_manifest_free(us_manifest *m);

/* Index of the table named `name` (or whose decimal id is `name`), or -1.
 * Returns: the table index, or -1 when no table matches.
 */
int us_manifest_find(const us_manifest *m, const char *name);

/* Reads and fully validates DIR/manifest.pb.
 * Returns: US_OK; US_ENOTFOUND (no manifest); US_EIO; US_ECORRUPT /
 * US_EVERSION naming manifest and table; US_EUNSUPP (non-row placement);
 * US_ENOMEM. On error *m is empty.
 */
int us_manifest_read(const char *dir, us_manifest *m, us_err *err);
/* Writes DIR/manifest.pb crash-safely (overwrites).
 * Returns: US_OK; US_EIO naming the file; US_ENOMEM. On error the old manifest stays.
 */
int us_manifest_write(const char *dir, const us_manifest *m, us_err *err);

#endif
