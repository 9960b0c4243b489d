/*
 * server.h — one coordinator's event loop of `ultrashard serve` (serve.h):
 * connections, frames, authentication, limits, the request queues, and the
 * work cycle (work.c) that answers them. Internal to coordinator/serve.
 *
 * Connections live in a fixed table of max_connections client slots plus
 * metrics slots; a queued request names its connection by (slot,
 * generation), so an answer to a connection that has gone is dropped.
 * Answers are appended to the connection's output buffer and written as the
 * socket allows; a connection that is closed for an error (bad frame, auth,
 * timeout) first gets its error frame (request_id 0), then is closed once
 * that is written or after a short grace period.
 */
#ifndef US_SERVE_SERVER_H
#define US_SERVE_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/infer/infer.h"
#include "coordinator/model/memory_dist.h"
#include "coordinator/model/model.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/serve/serve.h"
#include "kernels/stats.h"
#include "proto/client_frame.h"
#include "proto/world.h"

typedef struct serve_conn {
    int      fd;                  /* -1 = free slot */
    uint32_t gen;                 /* bumped at every reuse of the slot */
    bool     http;                /* a metrics connection */
    bool     authed, closing;
    us_frame_reader rd;
    uint8_t *out;                 /* pending output */
    size_t   out_len, out_off, out_cap;
    double   last_active_s, frame_start_s, closing_s;
    uint32_t in_flight;           /* requests queued or being worked */
    char     http_req[2048];
    size_t   http_len;
} serve_conn;

typedef struct serve_req {
    struct serve_req *next;
    uint32_t conn, conn_gen;
    Ultrashard__Request *msg;     /* owned */
    double   accepted_s;
    int      kind;                /* metrics kind index */
    uint32_t table;               /* Lookup/Memory: the table index */
    uint32_t tokens;              /* work tokens (lookup n_tokens) */
    us_prompt prompt;             /* Generate: id and bytes borrowed from msg */
    uint32_t streamed;            /* Generate: tokens answered so far */
} serve_req;

typedef struct serve_queue {
    serve_req *head, *tail;
    uint32_t n;
} serve_queue;

typedef struct us_service {
    const us_serve_opts *o;
    const us_world *world;        /* NULL: single process */
    us_memory_dist *dist;         /* NULL: single process */
    us_model *m;
    us_memory_backend be;         /* the model's backend (lookups go through it) */
    uint32_t n_tables, k, n_groups, dim;   /* dim: the tables' value dim */
    uint64_t *table_rows;         /* [n_tables] */
    int listen_fd, metrics_fd;
    serve_conn *conns;
    uint32_t n_conns;             /* slots: max_connections clients + metrics */
    uint32_t open_clients;
    char *token;                  /* NULL: no auth */
    size_t token_len;
    serve_queue lookups, gens;    /* waiting work */
    us_infer_stream *stream;
    serve_req **active;           /* [batch_size] generates being decoded */
    uint64_t *rows_buf;           /* lookup batch: [max_batch_tokens * k] */
    float *weights_buf, *out_buf;     /* out_buf: [max_batch_tokens][groups][dim] */
    uint8_t *groups_buf;
    us_workspace mem_ws;          /* Memory requests' activations (made on first use) */
    bool draining;
    int idle_ms;                  /* C > 1: pause before the next idle cycle */
    double start_s;
    us_request_limits limits;
    us_serve_metrics metrics;
    uint64_t requests_total, errors_total;
} us_service;

/* Set by the signal handler (serve.c); the loop drains when it is non-zero. */
extern volatile sig_atomic_t us_serve_stop_flag;

/* Runs the loop until drained after a stop signal.
 * Returns: US_OK; US_EIO for a poll failure; a cycle's error (the model or
 * the rounds: US_EMPI etc.) with *err set. */
int us_service_loop(us_service *s, us_err *err);

/* Queues r's answer on its connection (dropped when the connection has
 * gone); final answers (every status but a Generate's partial OK) count in
 * the metrics and release the request (freed here).
 * Returns: nothing (an answer that cannot be packed becomes INTERNAL). */
void serve_answer(us_service *s, serve_req *q, Ultrashard__Response *r, bool final);

/* Answers q with an error status and message (final) and frees it.
 * Returns: nothing. */
void serve_fail(us_service *s, serve_req *q, int status, const char *msg);

/* Checks q against the tables (name, k, groups, rows) and queues it; or
 * answers the error. Generate/Lookup/Memory only.
 * Returns: nothing. */
void serve_enqueue(us_service *s, serve_req *q);

/* Answers a Stats or Health request at once. Returns: nothing. */
void serve_answer_info(us_service *s, serve_req *q);

/* Whether a cycle has work (queued lookups, waiting or active generates).
 * Returns: true/false. */
bool serve_has_work(const us_service *s);

/* One cycle: queued lookups (coalesced per table) then one decode step.
 * Returns: US_OK; the rounds' or model's error (the job cannot go on). */
int serve_cycle(us_service *s, us_err *err);

/* Opens the stream, lookup buffers and table info.
 * Returns: US_OK; US_ENOMEM; the backend's table_info errors. */
int serve_work_open(us_service *s, us_err *err);

/* Returns: nothing; frees what serve_work_open made and queued requests. */
void serve_work_close(us_service *s);

/* Returns: nothing; unlinks and frees a request (not answered). */
void serve_req_free(serve_req *q);

#endif
