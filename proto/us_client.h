/*
 * us_client.h — the C client of `ultrashard serve` (protocol: the "Client API"
 * comment in proto/ultrashard.proto; frames: proto/client_frame.h).
 *
 * One us_client is one TCP connection to one coordinator, used by one thread.
 * us_client_open connects (with a timeout) and, when a token is given, sends
 * Auth and waits for its OK.
 *
 * Two ways to call:
 *   blocking   us_client_call / us_client_lookup / us_client_generate send one
 *              request and wait for its answer (answers to other requests
 *              that arrive meanwhile are kept for us_client_recv);
 *   pipelined  us_client_send any number of requests (each gets a request id,
 *              assigned here when the caller leaves it 0), then
 *              us_client_recv answers as they come, in any order.
 *
 * Faults: when the connection breaks (or a request is answered BUSY or
 * SHUTTING_DOWN), the client reconnects with exponential backoff
 * (backoff_initial_ms doubling up to backoff_max_ms, at most max_retries
 * attempts per call) and resends every pending idempotent request (Lookup,
 * Memory, Stats, Health) and every Generate of which nothing was streamed
 * yet, under the same request ids. A Generate that had streamed tokens
 * cannot be resumed: us_client_recv reports it lost (US_EIO naming its id)
 * and forgets it. Authentication failures are never retried.
 *
 * Errors: transport errors are US_EIO (message names the address), a
 * malformed answer US_EPROTO; a blocking call answered with a non-OK status
 * returns us_status_to_code(status) with "server: STATUS: message" in *err,
 * and us_client_last_status tells the status itself.
 */
#ifndef US_CLIENT_H
#define US_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"
#include "proto/client_frame.h"
#include "proto/ultrashard.pb-c.h"

typedef struct us_client_opts {
    const char *address;          /* "HOST:PORT" (host name, IPv4 or [IPv6]) */
    const char *token;            /* NULL: no Auth; else sent first on every connection */
    int      connect_timeout_ms;  /* 0 = 5000 */
    int      io_timeout_ms;       /* a blocking call's wait for its answer; 0 = forever */
    uint32_t max_frame_bytes;     /* largest answer accepted; 0 = US_FRAME_DEFAULT_MAX_BYTES */
    int      max_retries;         /* reconnects per call; 0 = 5; < 0 = never */
    int      backoff_initial_ms;  /* 0 = 50 */
    int      backoff_max_ms;      /* 0 = 2000 */
} us_client_opts;

typedef struct us_client us_client;

/* Splits "HOST:PORT" ("[v6]:PORT" too) into host (NUL-terminated) and port.
 * Returns: US_OK; US_EINVAL naming the address (no colon, bad port 1..65535,
 * empty or too long host). */
int us_client_parse_address(const char *addr, char *host, size_t host_cap, unsigned *port,
                            us_err *err);

/* Reads a token file: its bytes with trailing newlines stripped, refused
 * unless it is a regular file of mode 0600 (no group/other bits) owned by
 * this user and 1..4096 bytes long. *out is malloc'd and NUL-terminated.
 * Returns: US_OK; US_EIO (open/stat, naming the file); US_EINVAL (mode,
 * owner, empty or too long, naming the file and what to do). */
int us_client_read_token(const char *path, char **out, us_err *err);

/* Connects and authenticates.
 * Returns: US_OK with *out set; US_EINVAL for a bad address or options;
 * US_EIO when the server cannot be reached within the timeout (after the
 * retries); US_EINVAL "server: UNAUTHENTICATED: ..." for a refused token;
 * US_ENOMEM. */
int us_client_open(us_client **out, const us_client_opts *opts, us_err *err);

/* Returns: nothing; closes the connection and frees pending answers. */
void us_client_close(us_client *c);

/* Pipelined send. Sets req->version; assigns req->request_id when it is 0
 * (read it back from req). The request is packed and kept until answered.
 * Returns: US_OK; US_EINVAL for an id already in flight or no body;
 * US_ERANGE when it exceeds max_frame_bytes; US_EIO when the connection
 * broke and could not be restored. */
int us_client_send(us_client *c, Ultrashard__Request *req, us_err *err);

/* Next answer to any pending request (a kept one first). timeout_ms < 0
 * waits forever. A Generate's partial answers come one by one; its request
 * stays pending until the done (or error) answer.
 * Returns: US_OK with *out (free with us_client_response_free); US_EIO
 * "timed out" (*out NULL, nothing lost), a lost request (see above) or a
 * broken connection that could not be restored; US_EPROTO for an answer
 * that is malformed or names no pending request; US_EINVAL when nothing is
 * pending. */
int us_client_recv(us_client *c, int timeout_ms, Ultrashard__Response **out, us_err *err);

/* Returns: nothing; frees an answer from us_client_recv / us_client_call. */
void us_client_response_free(Ultrashard__Response *r);

/* Blocking: sends req, waits for its (final) answer. For a Generate the
 * partial answers are dropped: use us_client_generate to see them.
 * Returns: US_OK with *out of status OK; a non-OK status mapped as in the
 * file comment (*out NULL); the errors of send/recv. */
int us_client_call(us_client *c, Ultrashard__Request *req, Ultrashard__Response **out,
                   us_err *err);

/* Returns: the status of the last answer a blocking call received (OK
 * before any). */
int us_client_last_status(const us_client *c);

typedef struct us_client_lookup_args {
    const char     *table;
    uint32_t        n_tokens, k;
    const uint64_t *rows;        /* [n_tokens * k] */
    const float    *weights;     /* [n_tokens * k] */
    const uint8_t  *groups;      /* NULL, or [n_tokens * k] ids < n_groups */
    uint32_t        n_groups;    /* 0 or 1 = ungrouped */
} us_client_lookup_args;

/* Blocking Lookup. *out is malloc'd [n_tokens][max(1, n_groups)][*dim].
 * Returns: as us_client_call; US_EPROTO when the answer's shape differs
 * from the request's. */
int us_client_lookup(us_client *c, const us_client_lookup_args *a, float **out, uint32_t *dim,
                     us_err *err);

typedef struct us_client_generate_args {
    const uint8_t *prompt;
    size_t         prompt_len;
    uint32_t       max_tokens;   /* 0 = the server's default */
    float          temperature;  /* 0 = greedy */
    float          top_p;        /* 0 = 1.0 */
    uint64_t       seed;
    const char    *id;           /* sampling stream name (infer's line id); NULL = "" */
} us_client_generate_args;

/* Called for every streamed piece: tokens and their bytes. A non-zero
 * return stops waiting (the call returns US_EIO "stopped by caller"; the
 * server finishes the request and its answers are dropped). */
typedef int (*us_client_tokens_fn)(void *ctx, const uint32_t *tokens, size_t n_tokens,
                                   const uint8_t *text, size_t text_len);

typedef struct us_client_generate_result {
    uint32_t prompt_tokens, generated_tokens;
    char     finish[16];         /* "eos" | "length" | "nan_logits" */
} us_client_generate_result;

/* Blocking Generate with streaming: on_tokens (may be NULL) sees every piece
 * as it arrives, then *res (may be NULL) gets the final counts.
 * Returns: as us_client_call. */
int us_client_generate(us_client *c, const us_client_generate_args *a,
                       us_client_tokens_fn on_tokens, void *ctx,
                       us_client_generate_result *res, us_err *err);

#endif
