/*
 * serve.h — a shard answering gather requests (proto/wire.h) over its rows.
 *
 * A server wraps one table's local view (shard/store.h hands it out; tests
 * build one over an array). For each request it validates the message fully
 * (proto/wire.h), then the table id and every row against the table (row <
 * rows, block held by this shard, for int8 its scales too), and only then
 * computes:
 *   PUSH  per token t and IVE group g: sum_i w_i V[row_i] over the pairs of t
 *         in g, with us_gather_sum_prechecked (the rows already checked
 *         here are not checked again; pairs summed in message order, so
 *         a token's sum is bit-identical to a single-process gather of the
 *         same pairs)
 *   ROWS  the raw stored rows (us_gather_copy) and int8 scales
 *   NOP   an empty answer
 * A request that fails any check gets an error response (code + message
 * naming the field, row or table) and nothing is computed; the server stays
 * usable for the next request. Only local failures (out of memory) are
 * returned as errors by us_serve_request itself.
 *
 * Column placement: the view holds this shard's column slice of every row;
 * answers then carry dim = view->dim columns.
 *
 * Synthetic tables (us_server_init_synth): no view; the request's unique
 * rows are computed from (seed, table, row) into scratch (shard/synth_view.h)
 * and the same kernels run over that scratch, so the answers are
 * byte-identical to a server over the materialised synth_view (tested).
 *
 * Integrity: a server over a store's view (us_server_attach_store) passes
 * every request's rows through us_store_check_rows before computing, so no
 * row is served from a block whose CRC-32C has not been checked; a bad
 * block gets an error answer naming table, block and file (US_ECORRUPT).
 */
#ifndef US_SERVE_H
#define US_SERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/rows_view.h"
#include "kernels/us_status.h"
#include "proto/wire.h"
#include "shard/store.h"
#include "shard/synth_view.h"

typedef struct us_server_stats {
    uint64_t requests, rejected;
    uint64_t pairs, rows, tokens;
} us_server_stats;

typedef struct us_server {
    uint32_t table_id;
    int      shard_index;          /* for messages */
    const us_rows_view *view;      /* borrowed; outlives the server (NULL: synth) */
    us_synth_source *synth;        /* borrowed; rows computed on the fly (or NULL) */
    us_dtype dtype;                /* of the answers */
    uint32_t dim;
    uint64_t rows;                 /* valid row ids are [0, rows) */
    us_wire_limits limits;
    int      n_threads;            /* passed to the gather kernel */
    us_server_stats stats;
    us_err   last_error;           /* why the last rejected request was rejected */
    const us_store *store;         /* NULL, or the store the view came from */
    size_t   store_table;          /* the view's table index in store */
    /* scratch, grown on demand: padded per-token pair arrays */
    uint64_t *pad_rows;
    float    *pad_weights;
    uint8_t  *pad_groups;
    uint64_t  pad_cap;
    us_synth_batch synth_batch;    /* synth scratch: the request's unique rows */
} us_server;

/* Initialises a server over view (checked with us_rows_view_check).
 * Returns: US_OK, or the error of us_rows_view_check (US_EINVAL) naming shard and table.
 */
int us_server_init(us_server *s, uint32_t table_id, int shard_index,
                   const us_rows_view *view, const us_wire_limits *limits,
                   int n_threads, us_err *err);

/* Initialises a server that computes the rows of src on the fly (src's
 * spec gives table id, dtype, columns and the blocks held).
 * Returns: US_OK; US_EINVAL for a NULL source.
 */
int us_server_init_synth(us_server *s, int shard_index, us_synth_source *src,
                         const us_wire_limits *limits, int n_threads, us_err *err);

/* Answers one request message (req, len) by appending one response to out.
 * resp_flags are OR-ed into the response header. *rejected (optional) tells
 * whether it was an error response. *req_flags (optional) gets the request's
 * flags when the header was readable, else 0. Returns US_OK, or US_ENOMEM
 * when no response could be built (out unchanged).
 * Returns: US_OK (answer or error response appended), or US_ENOMEM.
 */
int us_serve_request(us_server *s, const void *req, uint64_t len, uint8_t resp_flags,
                     us_wire_buf *out, bool *rejected, uint8_t *req_flags, us_err *err);

/* Declares that the server's view is table `index` of store, so requests
 * are checked block by block (see Integrity above).
 * Returns: nothing; cannot fail.
 */
void us_server_attach_store(us_server *s, const us_store *store, size_t index);

/* Returns: nothing; the server may be initialised again. */
void us_server_free(us_server *s);

#endif
