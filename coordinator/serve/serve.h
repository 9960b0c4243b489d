/*
 * serve.h — `ultrashard serve`: the long-running service (issue #14).
 *
 * Under mpirun the job is shaped like `infer` (coordinator/infer/infer_job.h):
 * every rank opens its part of the store (memory_dist.h), shard-only ranks
 * serve lookup rounds (coordinator/lookup/job.h), and coordinator c of C
 * answers clients on PORT+c (and metrics on MPORT+c). Each coordinator runs
 * one event loop (server.h): it reads frames from all its connections
 * (proto/client_frame.h), queues requests, and each cycle coalesces queued
 * Lookup/Memory work into lookup rounds and runs one decode step of
 * continuous batching (coordinator/infer/infer.h streams) for its active
 * Generate requests. Coordinators with nothing to do either sleep in poll()
 * (C = 1: the shards then sleep in their control exchange) or, for C > 1,
 * join the others' cycles with IDLE, pacing themselves when every
 * coordinator is idle.
 *
 * SIGTERM/SIGINT on a coordinator: stop accepting connections and requests
 * (SHUTTING_DOWN), answer everything accepted, flush, then finish (the
 * shards stop once every coordinator has) and return US_OK. Shard ranks
 * ignore the signals and stop with the coordinators.
 *
 * Security: with token_file (mode 0600, owned by this user) every
 * connection must authenticate first; without it, listen and metrics
 * addresses must be loopback.
 */
#ifndef US_SERVE_SERVE_H
#define US_SERVE_SERVE_H

#include <stdint.h>

#include "coordinator/lookup/lookup.h"
#include "kernels/us_status.h"

typedef struct us_serve_opts {
    const char *model_dir;
    const char *store_dir;          /* required under mpirun with > 1 rank */
    const char *listen;             /* HOST:PORT; coordinator c uses PORT + c */
    const char *token_file;         /* NULL: no auth, loopback only */
    const char *metrics;            /* HOST:PORT or NULL; coordinator c uses PORT + c */
    const char *transport;          /* "mpi" (default) or "fabric" */
    us_lookup_mode lookup_mode;
    int      coordinators;          /* 0 = 1 */
    uint32_t max_batch_tokens;      /* tokens per lookup round / decode step */
    uint32_t batch_size;            /* Generate requests decoded at once */
    uint32_t batch_window_us;       /* wait this long to coalesce lookups */
    uint32_t max_connections;
    uint32_t max_frame_bytes;
    uint32_t idle_timeout_s;        /* a connection without traffic is closed */
    uint32_t frame_timeout_ms;      /* a frame must complete within this */
    uint32_t max_queue;             /* queued requests per coordinator; more: BUSY */
    uint32_t max_request_tokens;    /* Generate prompt + max_tokens; Lookup tokens are
                                       bounded by max_batch_tokens too */
    uint32_t default_max_tokens;    /* Generate with max_tokens 0 */
} us_serve_opts;

/* Defaults for every field above that is 0 (strings untouched).
 * Returns: nothing. */
void us_serve_opts_defaults(us_serve_opts *o);

/* Runs the service until SIGTERM/SIGINT (argc/argv for MPI_Init).
 * Returns: US_OK after a clean drain; US_EINVAL for bad options (token
 * file mode/owner, a non-loopback address without a token, ports out of
 * range, no --store with several ranks), US_EIO for a socket that cannot be
 * opened (naming the address), the model's or store's errors; US_EMPI.
 * Aborts the job when a round fails in the transport (us_job_run). */
int us_serve_run(const us_serve_opts *o, int *argc, char ***argv, us_err *err);

#endif
