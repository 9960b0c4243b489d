/*
 * server.c — one coordinator's event loop (server.h): poll() over the
 * listening sockets and every connection, frames in, answers out, timers,
 * and the work cycle when there is work.
 */
#include "coordinator/serve/server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLOSE_GRACE_S 1.0        /* an error frame gets this long to be written */
#define DRAIN_FLUSH_S 5.0        /* after draining, answers get this long to be written */
#define HTTP_TIMEOUT_S 5.0

volatile sig_atomic_t us_serve_stop_flag;

/* --- connections ------------------------------------------------------------ */

static void conn_close(us_service *s, serve_conn *c)
{
    if (c->fd < 0)
        return;
    close(c->fd);
    c->fd = -1;
    c->gen++;
    us_frame_reader_free(&c->rd);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
    if (!c->http) {
        s->open_clients--;
        s->metrics.connections_open = s->open_clients;
    }
}

/* Writes what the socket takes now. Returns -1 when the connection broke. */
static int conn_flush(serve_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Appends bytes to the output; a client that does not read its answers
 * (output over 4 frames + 1 MiB) is closed. */
static void conn_append(us_service *s, serve_conn *c, const uint8_t *p, size_t n)
{
    size_t limit = 4 * (size_t)s->o->max_frame_bytes + (1u << 20);
    if (c->out_len - c->out_off + n > limit) {
        conn_close(s, c);
        return;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        uint8_t *b = realloc(c->out, cap);
        if (b == NULL) {
            conn_close(s, c);
            return;
        }
        c->out = b;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (conn_flush(c) != 0)
        conn_close(s, c);
}

/* Sends a response frame on c (request_id, status, message, body). */
static void conn_respond(us_service *s, serve_conn *c, Ultrashard__Response *r)
{
    uint8_t *buf;
    size_t len;
    r->version = US_CLIENT_PROTOCOL_VERSION;
    if (us_frame_pack_response(r, s->o->max_frame_bytes, &buf, &len, NULL) != US_OK) {
        Ultrashard__Response e = ULTRASHARD__RESPONSE__INIT;
        e.version = US_CLIENT_PROTOCOL_VERSION;
        e.request_id = r->request_id;
        e.status = ULTRASHARD__STATUS__STATUS_TOO_LARGE;
        e.message = "answer exceeds --max-frame-bytes";
        if (us_frame_pack_response(&e, 0, &buf, &len, NULL) != US_OK)
            return;
    }
    conn_append(s, c, buf, len);
    free(buf);
}

/* A connection-level error: answer request_id 0 with it, then close. */
static void conn_error(us_service *s, serve_conn *c, int status, const char *msg)
{
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.status = (Ultrashard__Status)status;
    r.message = (char *)msg;
    s->metrics.responses[status]++;
    s->errors_total++;
    conn_respond(s, c, &r);
    c->closing = true;
    c->closing_s = us_now_s();
}

/* --- answers ------------------------------------------------------------------ */

void serve_answer(us_service *s, serve_req *q, Ultrashard__Response *r, bool final)
{
    serve_conn *c = &s->conns[q->conn];
    bool alive = c->fd >= 0 && c->gen == q->conn_gen;
    r->request_id = q->msg->request_id;
    if (alive)
        conn_respond(s, c, r);
    if (!final)
        return;
    int st = (int)r->status;
    if (st >= 0 && st < US_METRICS_STATUSES)
        s->metrics.responses[st]++;
    if (st != ULTRASHARD__STATUS__STATUS_OK)
        s->errors_total++;
    us_histogram_observe(&s->metrics.request_s[q->kind], us_now_s() - q->accepted_s, 0);
    if (c->gen == q->conn_gen && c->in_flight > 0)
        c->in_flight--;
    serve_req_free(q);
}

void serve_fail(us_service *s, serve_req *q, int status, const char *msg)
{
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.status = (Ultrashard__Status)status;
    r.message = (char *)msg;
    serve_answer(s, q, &r, true);
}

/* --- requests ------------------------------------------------------------------ */

/* Constant-time comparison of the presented token with ours. */
static bool token_ok(const us_service *s, const ProtobufCBinaryData *t)
{
    unsigned diff = t->len != s->token_len;
    for (size_t i = 0; i < s->token_len; i++)
        diff |= (unsigned)(s->token[i] ^ (i < t->len ? t->data[i] : 0));
    return diff == 0;
}

/* The first frame of a connection with a token configured. Returns false
 * when the connection was refused. */
static bool authenticate(us_service *s, serve_conn *c, const Ultrashard__Request *m)
{
    if (m->body_case != ULTRASHARD__REQUEST__BODY_AUTH || !token_ok(s, &m->auth->token)) {
        conn_error(s, c, ULTRASHARD__STATUS__STATUS_UNAUTHENTICATED,
                   m->body_case == ULTRASHARD__REQUEST__BODY_AUTH
                       ? "wrong token" : "the first request must be auth with the token");
        return false;
    }
    c->authed = true;
    return true;
}

static void answer_now(us_service *s, serve_conn *c, uint64_t id, int status, const char *msg)
{
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    r.request_id = id;
    r.status = (Ultrashard__Status)status;
    r.message = (char *)msg;
    if (status >= 0 && status < US_METRICS_STATUSES)
        s->metrics.responses[status]++;
    if (status != ULTRASHARD__STATUS__STATUS_OK)
        s->errors_total++;
    conn_respond(s, c, &r);
}

/* A request that passed the shape checks: answer, queue or refuse. Takes m. */
static void dispatch(us_service *s, uint32_t ci, Ultrashard__Request *m)
{
    serve_conn *c = &s->conns[ci];
    int kind = us_metrics_kind_index((int)m->body_case);
    s->metrics.requests[kind]++;
    s->requests_total++;
    if (m->body_case == ULTRASHARD__REQUEST__BODY_AUTH) {
        answer_now(s, c, m->request_id, ULTRASHARD__STATUS__STATUS_OK, "");
        ultrashard__request__free_unpacked(m, NULL);
        return;
    }
    bool work = m->body_case != ULTRASHARD__REQUEST__BODY_STATS &&
                m->body_case != ULTRASHARD__REQUEST__BODY_HEALTH;
    int refuse = s->draining && work ? ULTRASHARD__STATUS__STATUS_SHUTTING_DOWN
               : work && s->lookups.n + s->gens.n >= s->o->max_queue
                   ? ULTRASHARD__STATUS__STATUS_BUSY : 0;
    serve_req *q = refuse ? NULL : calloc(1, sizeof *q);
    if (q == NULL) {
        answer_now(s, c, m->request_id, refuse ? refuse : ULTRASHARD__STATUS__STATUS_INTERNAL,
                   refuse == ULTRASHARD__STATUS__STATUS_SHUTTING_DOWN ? "server is draining"
                   : refuse ? "request queue is full, retry later" : "out of memory");
        ultrashard__request__free_unpacked(m, NULL);
        return;
    }
    *q = (serve_req){ .conn = ci, .conn_gen = c->gen, .msg = m, .kind = kind,
                      .accepted_s = us_now_s() };
    c->in_flight++;
    if (work)
        serve_enqueue(s, q);
    else
        serve_answer_info(s, q);
}

/* One complete frame from a client connection. */
static void on_frame(us_service *s, uint32_t ci, uint8_t *payload, uint32_t len)
{
    serve_conn *c = &s->conns[ci];
    Ultrashard__Request *m = NULL;
    us_err err = {0};
    int rc = us_frame_unpack_request(payload, len, &m, &err);
    free(payload);
    if (rc != US_OK) {
        s->metrics.frames_bad++;
        conn_error(s, c, ULTRASHARD__STATUS__STATUS_BAD_REQUEST, err.msg);
        return;
    }
    if (s->token != NULL && !c->authed && !authenticate(s, c, m)) {
        ultrashard__request__free_unpacked(m, NULL);
        return;
    }
    int st = us_request_check(m, &s->limits, &err);
    if (st != ULTRASHARD__STATUS__STATUS_OK) {
        answer_now(s, c, m->request_id, st, err.msg);
        ultrashard__request__free_unpacked(m, NULL);
        return;
    }
    dispatch(s, ci, m);
}

static void on_client_readable(us_service *s, uint32_t ci)
{
    serve_conn *c = &s->conns[ci];
    uint8_t buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(s, c);
        return;
    }
    double now = us_now_s();
    c->last_active_s = now;
    for (size_t pos = 0; pos < (size_t)n && c->fd >= 0 && !c->closing;) {
        bool started = us_frame_reader_partial(&c->rd), done;
        size_t used;
        us_err err = {0};
        int rc = us_frame_reader_feed(&c->rd, buf + pos, (size_t)n - pos, &used, &done, &err);
        pos += used;
        if (rc != US_OK) {
            s->metrics.frames_bad++;
            conn_error(s, c, rc == US_ERANGE ? ULTRASHARD__STATUS__STATUS_TOO_LARGE
                                             : ULTRASHARD__STATUS__STATUS_BAD_REQUEST, err.msg);
            return;
        }
        if (!started && used > 0)
            c->frame_start_s = now;
        if (done) {
            uint32_t len;
            uint8_t *payload = us_frame_reader_take(&c->rd, &len);
            on_frame(s, ci, payload, len);
        }
    }
}

/* --- metrics over HTTP ---------------------------------------------------------- */

static void on_http_readable(us_service *s, serve_conn *c)
{
    ssize_t n = recv(c->fd, c->http_req + c->http_len, sizeof c->http_req - 1 - c->http_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(s, c);
        return;
    }
    c->http_len += (size_t)n;
    c->http_req[c->http_len] = '\0';
    bool full = c->http_len == sizeof c->http_req - 1;
    if (strstr(c->http_req, "\r\n\r\n") == NULL && strstr(c->http_req, "\n\n") == NULL && !full)
        return;
    char head[256], *body = NULL;
    size_t body_len = 0;
    bool ok = strncmp(c->http_req, "GET /metrics ", 13) == 0 ||
              strncmp(c->http_req, "GET /metrics\r", 13) == 0;
    if (ok && us_serve_metrics_render(&s->metrics, &body, &body_len) != 0)
        ok = false;
    int hl = snprintf(head, sizeof head, "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      ok ? "200 OK" : "404 Not Found",
                      ok ? "text/plain; version=0.0.4" : "text/plain",
                      ok ? body_len : strlen("only GET /metrics\n"));
    conn_append(s, c, (const uint8_t *)head, (size_t)hl);
    if (c->fd >= 0)
        conn_append(s, c, ok ? (const uint8_t *)body : (const uint8_t *)"only GET /metrics\n",
                    ok ? body_len : strlen("only GET /metrics\n"));
    free(body);
    c->closing = true;
    c->closing_s = us_now_s();
}

/* --- accepting ------------------------------------------------------------------ */

static void refuse_busy(int fd)
{
    Ultrashard__Response r = ULTRASHARD__RESPONSE__INIT;
    uint8_t *buf;
    size_t len;
    r.version = US_CLIENT_PROTOCOL_VERSION;
    r.status = ULTRASHARD__STATUS__STATUS_BUSY;
    r.message = "too many connections (--max-connections)";
    if (us_frame_pack_response(&r, 0, &buf, &len, NULL) == US_OK) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
        free(buf);
    }
    close(fd);
}

static void on_accept(us_service *s, int lfd, bool http)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        uint32_t lo = http ? s->o->max_connections : 0;
        uint32_t hi = http ? s->n_conns : s->o->max_connections;
        uint32_t i = lo;
        while (i < hi && s->conns[i].fd >= 0)
            i++;
        if (i == hi) {
            s->metrics.connections_refused++;
            if (http)
                close(fd);
            else
                refuse_busy(fd);
            continue;
        }
        serve_conn *c = &s->conns[i];
        uint32_t gen = c->gen;
        memset(c, 0, sizeof *c);
        *c = (serve_conn){ .fd = fd, .gen = gen, .http = http,
                           .last_active_s = us_now_s() };
        us_frame_reader_init(&c->rd, s->o->max_frame_bytes);
        if (!http) {
            s->open_clients++;
            s->metrics.connections_total++;
            s->metrics.connections_open = s->open_clients;
        }
    }
}

/* --- timers ------------------------------------------------------------------------ */

static void check_timers(us_service *s, double now)
{
    for (uint32_t i = 0; i < s->n_conns; i++) {
        serve_conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        if (c->closing) {
            if (c->out_off == c->out_len || now - c->closing_s > CLOSE_GRACE_S)
                conn_close(s, c);
        } else if (c->http) {
            if (now - c->last_active_s > HTTP_TIMEOUT_S)
                conn_close(s, c);
        } else if (us_frame_reader_partial(&c->rd) &&
                   now - c->frame_start_s > s->o->frame_timeout_ms / 1000.0) {
            s->metrics.frames_bad++;
            conn_error(s, c, ULTRASHARD__STATUS__STATUS_TIMEOUT,
                       "frame not completed within the frame deadline");
        } else if (c->in_flight == 0 && !us_frame_reader_partial(&c->rd) &&
                   now - c->last_active_s > s->o->idle_timeout_s) {
            conn_error(s, c, ULTRASHARD__STATUS__STATUS_TIMEOUT, "idle timeout");
        }
    }
}

/* --- the loop ------------------------------------------------------------------------ */

/* Fills pfds: [0] listener, [1] metrics listener (fd -1 when absent), then
 * one per open connection (idx maps back to the slot). */
static nfds_t build_pollfds(us_service *s, struct pollfd *pfds, uint32_t *idx)
{
    nfds_t n = 2;
    pfds[0] = (struct pollfd){ .fd = s->listen_fd, .events = POLLIN };
    pfds[1] = (struct pollfd){ .fd = s->metrics_fd, .events = POLLIN };
    for (uint32_t i = 0; i < s->n_conns; i++) {
        serve_conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        short ev = c->closing ? 0 : POLLIN;
        if (c->out_off < c->out_len)
            ev |= POLLOUT;
        pfds[n] = (struct pollfd){ .fd = c->fd, .events = ev };
        idx[n++] = i;
    }
    return n;
}

static void handle_events(us_service *s, struct pollfd *pfds, const uint32_t *idx, nfds_t n)
{
    if (pfds[0].revents & POLLIN)
        on_accept(s, s->listen_fd, false);
    if (pfds[1].revents & POLLIN)
        on_accept(s, s->metrics_fd, true);
    for (nfds_t k = 2; k < n; k++) {
        serve_conn *c = &s->conns[idx[k]];
        short re = pfds[k].revents;
        if (c->fd < 0 || re == 0)
            continue;
        if ((re & POLLOUT) && conn_flush(c) != 0) {
            conn_close(s, c);
            continue;
        }
        if (re & (POLLIN | POLLHUP | POLLERR)) {
            if (c->http)
                on_http_readable(s, c);
            else if (!c->closing)
                on_client_readable(s, idx[k]);
            else if (re & (POLLHUP | POLLERR))
                conn_close(s, c);
        }
    }
}

/* Whether the queued work should run now: decoding never waits; lookups
 * wait up to the batch window for company unless a round is already full. */
static bool work_due(const us_service *s, double now, int *wait_ms)
{
    *wait_ms = -1;
    if (s->gens.n > 0 || (s->stream && us_infer_stream_active(s->stream) > 0))
        return true;
    if (s->lookups.n == 0)
        return false;
    uint64_t tokens = 0;
    for (const serve_req *q = s->lookups.head; q; q = q->next)
        tokens += q->tokens;
    double age_us = (now - s->lookups.head->accepted_s) * 1e6;
    if (tokens >= s->o->max_batch_tokens || age_us >= s->o->batch_window_us || s->draining)
        return true;
    *wait_ms = (int)((s->o->batch_window_us - age_us) / 1000.0) + 1;
    return false;
}

/* Nothing to do on this coordinator. C > 1: join the others' cycle (they
 * may be decoding). While every coordinator is idle, the pause between
 * idle cycles grows 1, 2, 4, 8, 10 ms, so idle shards sleep (memory_dist's
 * control exchange naps after 1 ms) instead of spinning; the price is up to
 * 10 ms before the first cycle after an idle spell. */
static int idle_cycle(us_service *s, us_err *err)
{
    if (s->world == NULL || s->world->n_coordinators < 2)
        return US_OK;
    int rc = us_memory_dist_idle(s->dist, err);
    bool any = false;
    for (int c = 0; rc == US_OK && c < s->world->n_coordinators; c++)
        any |= s->dist->ctl_msgs[c].kind == US_CONTROL_CYCLE;
    s->idle_ms = any ? 0 : s->idle_ms == 0 ? 1 : s->idle_ms >= 5 ? 10 : 2 * s->idle_ms;
    return rc;
}

/* Draining and everything answered and written (or given up on). */
static bool drained(us_service *s, double *flush_start)
{
    if (!s->draining || serve_has_work(s))
        return false;
    double now = us_now_s();
    if (*flush_start == 0)
        *flush_start = now;
    for (uint32_t i = 0; i < s->n_conns; i++)
        if (s->conns[i].fd >= 0 && !s->conns[i].http &&
            s->conns[i].out_off < s->conns[i].out_len && now - *flush_start < DRAIN_FLUSH_S)
            return false;
    return true;
}

int us_service_loop(us_service *s, us_err *err)
{
    struct pollfd *pfds = calloc(s->n_conns + 2, sizeof *pfds);
    uint32_t *idx = calloc(s->n_conns + 2, sizeof *idx);
    double flush_start = 0;
    int rc = US_OK;
    if (pfds == NULL || idx == NULL)
        rc = us_err_set(err, US_ENOMEM, "serve: out of memory");
    while (rc == US_OK && !drained(s, &flush_start)) {
        if (us_serve_stop_flag && !s->draining) {
            s->draining = true;
            if (s->listen_fd >= 0)   /* new clients are refused at once: they retry */
                close(s->listen_fd);
            s->listen_fd = -1;
            fprintf(stderr, "serve: coordinator %d draining (signal)\n",
                    s->world ? s->world->coordinator_index : 0);
        }
        int wait_ms;
        bool due = work_due(s, us_now_s(), &wait_ms);
        bool multi = s->world != NULL && s->world->n_coordinators > 1;
        int timeout = due ? 0 : wait_ms >= 0 ? wait_ms
                    : multi ? s->idle_ms : 100;
        nfds_t n = build_pollfds(s, pfds, idx);
        if (poll(pfds, n, timeout) < 0 && errno != EINTR) {
            rc = us_err_set(err, US_EIO, "serve: poll failed: %s", strerror(errno));
            break;
        }
        handle_events(s, pfds, idx, n);
        double now = us_now_s();
        check_timers(s, now);
        if (work_due(s, now, &wait_ms))
            rc = serve_cycle(s, err);
        else if (multi && wait_ms < 0)
            rc = idle_cycle(s, err);
    }
    for (uint32_t i = 0; i < s->n_conns; i++)
        conn_close(s, &s->conns[i]);
    free(pfds);
    free(idx);
    return rc;
}
