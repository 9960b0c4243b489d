/*
 * readplan.h — one-sided pull: which byte ranges to read for a set of rows.
 *
 * Reading one row per fi_read costs a fixed few microseconds per read on
 * software providers (measured ~7 us shm, ~10 us tcp), so rows of the same
 * shard and block that lie close together are fetched by one read of the
 * whole span, gaps included, whenever the gap costs fewer bytes than
 * gap_bytes (the bytes a link moves in the time of one read: the cost
 * model's read_us * bytes_per_us). gap_bytes = 0 merges only exactly
 * adjacent rows (what pull.c asks when the transport's reads are batched
 * process_vm_readv: rma_span_exact, proto/transport.h). Spans never cross a block (blocks are registered apart) or
 * a shard.
 *
 * Pure bookkeeping: the plan gives, per span, where to read (shard, block,
 * first row in the block, row count) and where it lands (offset into one
 * landing buffer, 8-aligned), and per row its landing offset. The plan owns
 * its arrays and reuses them across batches.
 */
#ifndef US_READPLAN_H
#define US_READPLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/us_status.h"

typedef struct us_read_span {
    int      shard;
    uint64_t block;
    uint64_t first;          /* first row index inside the block */
    uint64_t n_rows;
    uint64_t bytes;          /* (n_rows - 1) * stride + row_bytes */
    uint64_t dst_off;        /* in the landing buffer */
} us_read_span;

typedef struct us_read_plan {
    us_read_span *spans;
    uint64_t n_spans;
    uint64_t *row_off;       /* [n] landing offset of each row (UINT64_MAX: skipped) */
    uint64_t *row_span;      /* [n] span index of each row */
    uint64_t landing_bytes;
    uint64_t bytes_read;     /* sum of span bytes */
    /* scratch */
    void     *order;
    uint64_t cap, span_cap;
} us_read_plan;

/* The rows to plan reads for, and how the shards hold them. */
typedef struct us_read_plan_input {
    const uint64_t *rows;     /* [n] distinct rows */
    const int32_t *owner;     /* [n] shard owning each row */
    const bool *skip;         /* [n] true: not read (held already); NULL = read all */
    uint64_t n;
    uint32_t block_bits;      /* rows per block = 2^block_bits; spans stay in a block */
    int n_shards;
    const uint64_t *stride;   /* [n_shards] each shard's row stride, bytes */
    uint64_t row_bytes;       /* bytes wanted per row (<= every stride) */
    uint64_t gap_bytes;       /* merge rows whose gap is fewer bytes than this */
} us_read_plan_input;

/* Plans reads for in->rows (see us_read_plan_input); *p is reused.
 * Returns: US_OK; US_EINVAL naming the shard count, block_bits, a stride
 * below row_bytes or a row whose owner is out of range; US_ENOMEM. */
int us_read_plan_build(us_read_plan *p, const us_read_plan_input *in, us_err *err);

/* Frees the plan's arrays. Returns: nothing. */
void us_read_plan_free(us_read_plan *p);

#endif
