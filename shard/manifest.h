/*
 * manifest.h — a store's table layouts and its manifest.pb file.
 *
 * Layout of one table (us_table_layout): rows are grouped into blocks of
 * 2^block_bits rows; block b of the table lives in shard
 * us_placement_shard(table_id, b, placement_seed, shard_count), in the file
 * "table-<id>.shard-<s>.bin" of the store directory. A shard file (format
 * 2) starts with one 4096-byte header slot (us_shard_header below: magic,
 * format, store id, table id, shard, block count, header CRC) and then has
 * a sequence of fixed-size slots, one per block the shard owns, in ascending
 * block id order; each slot is a multiple of 4096 bytes, so every block
 * starts 4 KiB aligned (mmap-able, O_DIRECT-able). Format 1 files (older
 * stores, still readable) have no header: identity is then unchecked and
 * `inspect` says so. Inside a slot:
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

#define US_STORE_FORMAT_VERSION 2      /* written; 1 (no file header) is still read */
#define US_STORE_FORMAT_NO_HEADER 1
#define US_SHARD_HEADER_BYTES 4096u
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
    /* stamped by us_manifest_set_table from the manifest: what a shard
     * file of this table must say about itself */
    uint64_t store_id_hi, store_id_lo;
    uint32_t file_header_bytes;     /* 0 (format 1) or US_SHARD_HEADER_BYTES */
} us_table_layout;

/* Checks the fields above the "derived" line and fills the derived ones
 * (file_header_bytes for the current format; the store id stays as given:
 * writers pass the layout us_manifest_set_table stamped).
 * Returns: US_OK, or US_EINVAL naming the table for zero/oversized dims,
 * bad dtype, block bits (t unchanged above the derived fields).
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

/* Size of a shard file holding n_blocks blocks of t (header included).
 * Returns: the byte count; cannot fail. */
uint64_t us_layout_file_bytes(const us_table_layout *t, uint64_t n_blocks);

/* Byte offset of slot k (the k-th owned block) inside its shard file.
 * Returns: the offset; cannot fail. */
uint64_t us_layout_slot_offset(const us_table_layout *t, uint64_t k);

/* The identity a shard file carries in its first slot. On disk, little
 * endian: magic "USSHARD\0" [0,8), format u32 [8,12), table_id u32
 * [12,16), store_id_hi u64 [16,24), store_id_lo u64 [24,32), shard u32
 * [32,36), shard_count u32 [36,40), n_blocks u64 [40,48), block_slot_bytes
 * u64 [48,56), CRC-32C of bytes [0,56) as u32 [56,60); zeros to 4096. */
typedef struct us_shard_header {
    uint32_t format_version, table_id, shard, shard_count;
    uint64_t store_id_hi, store_id_lo, n_blocks, block_slot_bytes;
} us_shard_header;

/* The header a file of (t, shard of shard_count) must carry.
 * Returns: the header by value; cannot fail. */
us_shard_header us_shard_header_expected(const us_table_layout *t, uint32_t shard_count,
                                         uint32_t shard);
/* Encodes h into buf (US_SHARD_HEADER_BYTES, zero padded, CRC set).
 * Returns: nothing; cannot fail. */
void us_shard_header_encode(uint8_t *buf, const us_shard_header *h);
/* Decodes and checks buf against want. Returns: US_OK, or US_ECORRUPT with a
 * message naming `path` and what differs: no magic (zeroed or foreign
 * file), header CRC, store id (file of another store), table or shard
 * (swapped or renamed file), block count or slot size. */
int us_shard_header_check(const uint8_t *buf, const us_shard_header *want, const char *path,
                          us_err *err);

typedef struct us_manifest {
    uint32_t format_version;
    uint32_t shard_count;
    uint64_t store_id_hi, store_id_lo;   /* random at creation; 0 in format 1 */
    size_t   n_tables;
    us_table_layout *tables;    /* [n_tables] */
    uint32_t **block_crc;       /* [n_tables][n_blocks]; NULL for synthetic tables */
    char   **names;             /* owned table names */
} us_manifest;

/* Allocates an empty manifest for n_tables tables (names copied by
 * us_manifest_set_table), current format, with a fresh random store id.
 * Returns: US_OK, or US_ENOMEM (m left empty).
 */
int us_manifest_alloc(us_manifest *m, uint32_t shard_count, size_t n_tables, us_err *err);
/* Copies layout (and its name) into slot i, stamps the manifest's store id
 * and file header size into the copy, allocates its CRC array.
 * Returns: US_OK, or US_ENOMEM naming the table.
 */
int us_manifest_set_table(us_manifest *m, size_t i, const us_table_layout *t, us_err *err);
/* Replaces the store id (ranks building one store share rank 0's) and
 * restamps every table layout with it.
 * Returns: nothing; cannot fail.
 */
void us_manifest_set_store_id(us_manifest *m, uint64_t hi, uint64_t lo);
/* Returns: nothing; leaves *m zeroed. */
void us_manifest_free(us_manifest *m);

/* Index of the table named `name` (or whose decimal id is `name`), or -1.
 * Returns: the table index, or -1 when no table matches.
 */
int us_manifest_find(const us_manifest *m, const char *name);

/* Reads and fully validates DIR/manifest.pb.
 * Returns: US_OK; US_ENOTFOUND (no manifest); US_EIO; US_ECORRUPT /
 * US_EVERSION naming manifest and table (US_EVERSION: a store format other
 * than 1 or 2, or a newer message version); US_EUNSUPP (non-row
 * placement); US_ENOMEM. On error *m is empty.
 */
int us_manifest_read(const char *dir, us_manifest *m, us_err *err);
/* Writes DIR/manifest.pb crash-safely (overwrites).
 * Returns: US_OK; US_EIO naming the file; US_ENOMEM. On error the old manifest stays.
 */
int us_manifest_write(const char *dir, const us_manifest *m, us_err *err);

#endif
