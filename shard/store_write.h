/*
 * store_write.h — building a store directory: staged directory, shard files.
 *
 * A new store is written into "<dir>.partial" (the stage) and becomes <dir>
 * with one rename when every file and the manifest are durable:
 *     us_stage_begin      refuse an existing <dir>; clear a stale stage left
 *                         by a crash (so two builds of one <dir> at the same
 *                         time are not supported); mkdir the stage
 *     us_shard_file_write one (table, shard) file, crash-safe, CRC per block
 *     us_manifest_write   into the stage (manifest.h)
 *     us_stage_commit     fsync stage, rename to <dir>, fsync the parent
 *     us_stage_abort      on any error: remove the stage
 * Under MPI, rank 0 does begin/commit/abort and every rank writes the
 * shard files it owns in between (see import.h).
 *
 * Resuming: us_stage_begin_plan() records a plan (text naming the inputs
 * and every option) in "<stage>/import.plan". After a crash, a rerun with
 * an identical plan keeps the stage: shard files already committed there
 * (durable, full size) are kept and only checksummed (us_shard_file_resume),
 * the rest are written. A different plan clears the stage and starts over.
 * The plan file is removed before the stage becomes the store.
 */
#ifndef US_STORE_WRITE_H
#define US_STORE_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"
#include "shard/manifest.h"

/* Fills the slot of block `block` (block_slot_bytes) with its rows and, for
 * int8, their scales at scales_offset_bytes; the writer zeroes the rest. */
typedef int (*us_block_fill_fn)(void *ctx, const us_table_layout *t, uint64_t block,
                                uint8_t *slot, us_err *err);

/* Writes DIR/table-<id>.shard-<shard>.bin: the identity header (when
 * t->file_header_bytes > 0: pass the layout stamped by
 * us_manifest_set_table, so the file carries that manifest's store id),
 * then every block placement gives to `shard`, in ascending order, and
 * stores each block's CRC in block_crc[block] (other entries untouched).
 * Crash-safe; on error the file does not exist. *bytes_out (optional) gets
 * the file size. Returns: US_OK, US_ENOMEM, US_EIO, or fill's error. */
int us_shard_file_write(const char *dir, const us_table_layout *t, uint32_t shard_count,
                        uint32_t shard, us_block_fill_fn fill, void *ctx,
                        uint32_t *block_crc, uint64_t *bytes_out, us_err *err);

/* stage_out (cap >= strlen(dir) + 16) receives "<dir>.partial".
 * Returns: US_OK; US_EEXIST if <dir> exists (a store is never overwritten);
 * US_EINVAL if cap is too small; US_EIO. */
int us_stage_begin(const char *dir, char *stage_out, size_t cap, us_err *err);

/* As us_stage_begin, but keeps a stage whose import.plan equals `plan`
 * (*resumed = true; leftover temp files are removed), else starts a fresh
 * stage and writes the plan into it durably (*resumed = false).
 * Returns: as us_stage_begin. */
int us_stage_begin_plan(const char *dir, const char *plan, char *stage_out, size_t cap,
                        bool *resumed, us_err *err);

/* If DIR/table-<id>.shard-<shard>.bin exists with exactly the expected size,
 * computes its blocks' CRCs into block_crc from the file (no input read),
 * rewrites its header with t's identity (this run's store id) and returns
 * US_OK with *bytes_out set; US_ENOTFOUND if it is absent or has another
 * size (then it is removed and must be written).
 * Returns: US_OK, US_ENOTFOUND, US_EIO, US_ENOMEM (as above). */
int us_shard_file_resume(const char *dir, const us_table_layout *t, uint32_t shard_count,
                         uint32_t shard, uint32_t *block_crc, uint64_t *bytes_out,
                         us_err *err);
/* Renames a complete stage to dir and syncs the parent directory.
 * Returns: US_OK; US_EEXIST if dir appeared meanwhile; US_EIO. */
int us_stage_commit(const char *stage, const char *dir, us_err *err);
/* Removes the stage's files (only names a store writes) and the stage.
 * Returns: nothing (best effort). */
void us_stage_abort(const char *stage);

#endif
