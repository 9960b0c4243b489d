/* us_client.c — the C client of `ultrashard serve` (see us_client.h). */
#include "proto/us_client.h"
#include "kernels/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_MAX_BYTES 4096

typedef struct pending {
    uint64_t id;
    uint8_t *frame;               /* packed, header included */
    size_t   len;
    bool     idempotent, generate;
    uint32_t streamed;            /* Generate: partial answers received */
    int      retries;
} pending;

typedef struct stashed {
    struct stashed *next;
    Ultrashard__Response *r;
} stashed;

struct us_client {
    us_client_opts o;
    char    *address, *token;
    char     host[256];
    unsigned port;
    int      fd;
    uint64_t next_id;
    pending *pend;
    size_t   n_pend, cap_pend;
    stashed *stash;               /* answers kept for us_client_recv */
    int      last_status;
};

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int us_client_parse_address(const char *addr, char *host, size_t host_cap, unsigned *port,
                            us_err *err)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (colon == NULL || colon == addr)
        return us_err_set(err, US_EINVAL, "address \"%s\": want HOST:PORT", addr ? addr : "");
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p == 0 || p > 65535)
        return us_err_set(err, US_EINVAL, "address \"%s\": port must be 1..65535", addr);
    if (hl == 0 || hl >= host_cap)
        return us_err_set(err, US_EINVAL, "address \"%s\": bad host", addr);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (unsigned)p;
    return US_OK;
}

int us_client_read_token(const char *path, char **out, us_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return us_err_set(err, US_EIO, "token file %s: %s", path, strerror(errno));
    struct stat st;
    int rc = US_OK;
    if (fstat(fd, &st) != 0)
        rc = us_err_set(err, US_EIO, "token file %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = us_err_set(err, US_EINVAL, "token file %s: not a regular file", path);
    else if (st.st_uid != geteuid())
        rc = us_err_set(err, US_EINVAL, "token file %s: owned by uid %u, not by this user "
                        "(uid %u)", path, (unsigned)st.st_uid, (unsigned)geteuid());
    else if ((st.st_mode & 077) != 0)
        rc = us_err_set(err, US_EINVAL, "token file %s: mode %03o lets others read it; "
                        "chmod 600 %s", path, (unsigned)(st.st_mode & 0777), path);
    char *buf = rc == US_OK ? malloc(TOKEN_MAX_BYTES + 2) : NULL;
    if (rc == US_OK && buf == NULL)
        rc = us_err_set(err, US_ENOMEM, "token file %s: out of memory", path);
    ssize_t n = rc == US_OK ? read(fd, buf, TOKEN_MAX_BYTES + 1) : 0;
    close(fd);
    if (rc == US_OK && n < 0)
        rc = us_err_set(err, US_EIO, "token file %s: %s", path, strerror(errno));
    while (rc == US_OK && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (rc == US_OK && (n <= 0 || n > TOKEN_MAX_BYTES))
        rc = us_err_set(err, US_EINVAL, "token file %s: the token must be 1..%d bytes", path,
                        TOKEN_MAX_BYTES);
    if (rc != US_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    return US_OK;
}

/* --- the socket ------------------------------------------------------------------ */

static int connect_once(us_client *c, us_err *err)
{
    char port[16];
    snprintf(port, sizeof port, "%u", c->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(c->host, port, &hints, &ai) != 0)
        return us_err_set(err, US_EINVAL, "%s: cannot resolve host \"%s\"", c->address, c->host);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0 && fd >= 0 && errno == EINPROGRESS) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int so = 0;
        socklen_t sl = sizeof so;
        if (poll(&p, 1, c->o.connect_timeout_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
            rc = 0;
        else
            errno = so ? so : ETIMEDOUT;
    }
    if (rc != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return us_err_set(err, US_EIO, "%s: cannot connect: %s", c->address, strerror(e));
    }
    c->fd = fd;
    return US_OK;
}

/* Writes all bytes (waiting for the socket as needed). */
static int write_all(us_client *c, const uint8_t *p, size_t n, us_err *err)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
            poll(&pf, 1, 1000);
            continue;
        }
        if (w <= 0)
            return us_err_set(err, US_EIO, "%s: send failed: %s", c->address,
                              w < 0 ? strerror(errno) : "closed");
        p += w;
        n -= (size_t)w;
    }
    return US_OK;
}

/* Reads exactly n bytes by deadline (< 0: none). Returns US_EIO "timed out"
 * with *timed_out set, or US_EIO for a broken connection. */
static int read_full(us_client *c, uint8_t *p, size_t n, double deadline, bool *timed_out,
                     us_err *err)
{
    *timed_out = false;
    while (n > 0) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0)
            return us_err_set(err, US_EIO, "%s: connection closed by the server", c->address);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return us_err_set(err, US_EIO, "%s: recv failed: %s", c->address, strerror(errno));
        int ms = -1;
        if (deadline >= 0) {
            double left = deadline - us_now_s();
            if (left <= 0) {
                *timed_out = true;
                return us_err_set(err, US_EIO, "%s: timed out waiting for an answer",
                                  c->address);
            }
            ms = (int)(left * 1000.0) + 1;
        }
        struct pollfd pf = { .fd = c->fd, .events = POLLIN };
        poll(&pf, 1, ms);
    }
    return US_OK;
}

/* One response frame. A timeout before any byte of it leaves the stream
 * intact (*timed_out); any other failure means the connection is broken. */
static int read_response(us_client *c, double deadline, Ultrashard__Response **out,
                         bool *timed_out, us_err *err)
{
    uint8_t h[US_FRAME_HEADER_BYTES];
    int rc = read_full(c, h, 1, deadline, timed_out, err);
    if (rc == US_OK)
        rc = read_full(c, h + 1, 3, -1, timed_out, err);
    if (rc != US_OK)
        return rc;
    uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
                   (uint32_t)h[3] << 24;
    if (len == 0 || len > c->o.max_frame_bytes)
        return us_err_set(err, US_EPROTO, "%s: answer frame of %u bytes (limit %u)",
                          c->address, len, c->o.max_frame_bytes);
    uint8_t *p = malloc(len);
    if (p == NULL)
        return us_err_set(err, US_ENOMEM, "%s: out of memory for %u bytes", c->address, len);
    rc = read_full(c, p, len, -1, timed_out, err);
    if (rc == US_OK)
        rc = us_frame_unpack_response(p, len, out, err);
    free(p);
    return rc;
}

/* --- connection set-up, auth, reconnect --------------------------------------------- */

static int authenticate(us_client *c, us_err *err)
{
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    Ultrashard__AuthRequest a = ULTRASHARD__AUTH_REQUEST__INIT;
    a.token.data = (uint8_t *)c->token;
    a.token.len = strlen(c->token);
    req.version = US_CLIENT_PROTOCOL_VERSION;
    req.request_id = UINT64_MAX;   /* never used by the caller's ids */
    req.body_case = ULTRASHARD__REQUEST__BODY_AUTH;
    req.auth = &a;
    uint8_t *buf;
    size_t len;
    bool to;
    Ultrashard__Response *r = NULL;
    int rc = us_frame_pack_request(&req, 0, &buf, &len, err);
    if (rc != US_OK)
        return rc;
    rc = write_all(c, buf, len, err);
    free(buf);
    double deadline = us_now_s() + (c->o.io_timeout_ms > 0 ? c->o.io_timeout_ms : 10000) / 1000.0;
    if (rc == US_OK)
        rc = read_response(c, deadline, &r, &to, err);
    if (rc != US_OK)
        return rc;
    int st = (int)r->status;
    if (st != ULTRASHARD__STATUS__STATUS_OK)
        rc = us_err_set(err, US_EINVAL, "server: %s: %s", us_status_name(st), r->message);
    ultrashard__response__free_unpacked(r, NULL);
    return rc;
}

/* Connects (and authenticates), retrying with backoff. Auth refusals are final. */
static int reconnect(us_client *c, us_err *err)
{
    int delay = c->o.backoff_initial_ms, rc = US_EIO;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    for (int attempt = 0; attempt <= (c->o.max_retries > 0 ? c->o.max_retries : 0); attempt++) {
        if (attempt > 0) {
            sleep_ms(delay);
            delay = delay * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : delay * 2;
        }
        if ((rc = connect_once(c, err)) != US_OK)
            continue;
        if (c->token == NULL || (rc = authenticate(c, err)) == US_OK)
            return US_OK;
        close(c->fd);
        c->fd = -1;
        if (rc == US_EINVAL)
            return rc;
    }
    return rc;
}

/* After a reconnect: resend what may be resent, forget (and report) the rest. */
static int resend_pending(us_client *c, us_err *err)
{
    uint64_t lost = 0;
    size_t keep = 0;
    for (size_t i = 0; i < c->n_pend; i++) {
        pending *p = &c->pend[i];
        if (p->idempotent || (p->generate && p->streamed == 0)) {
            c->pend[keep++] = *p;
            continue;
        }
        lost = p->id;
        free(p->frame);
    }
    c->n_pend = keep;
    for (size_t i = 0; i < c->n_pend; i++) {
        int rc = write_all(c, c->pend[i].frame, c->pend[i].len, err);
        if (rc != US_OK)
            return rc;
    }
    if (lost != 0)
        return us_err_set(err, US_EIO, "%s: request %llu (a Generate that had streamed) was "
                          "lost with the connection", c->address, (unsigned long long)lost);
    return US_OK;
}

/* The connection broke: reconnect and resend. */
static int recover(us_client *c, us_err *err)
{
    int rc = reconnect(c, err);
    return rc == US_OK ? resend_pending(c, err) : rc;
}

int us_client_open(us_client **out, const us_client_opts *opts, us_err *err)
{
    *out = NULL;
    us_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return us_err_set(err, US_ENOMEM, "client: out of memory");
    c->o = *opts;
    c->fd = -1;
    c->next_id = 1;
    if (!c->o.connect_timeout_ms) c->o.connect_timeout_ms = 5000;
    if (!c->o.max_frame_bytes) c->o.max_frame_bytes = US_FRAME_DEFAULT_MAX_BYTES;
    if (!c->o.max_retries) c->o.max_retries = 5;
    if (!c->o.backoff_initial_ms) c->o.backoff_initial_ms = 50;
    if (!c->o.backoff_max_ms) c->o.backoff_max_ms = 2000;
    int rc = US_OK;
    c->address = strdup(opts->address ? opts->address : "");
    c->token = opts->token ? strdup(opts->token) : NULL;
    if (c->address == NULL || (opts->token && c->token == NULL))
        rc = us_err_set(err, US_ENOMEM, "client: out of memory");
    if (rc == US_OK)
        rc = us_client_parse_address(c->address, c->host, sizeof c->host, &c->port, err);
    if (rc == US_OK)
        rc = reconnect(c, err);
    if (rc != US_OK) {
        us_client_close(c);
        return rc;
    }
    *out = c;
    return US_OK;
}

void us_client_close(us_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    for (size_t i = 0; i < c->n_pend; i++)
        free(c->pend[i].frame);
    free(c->pend);
    while (c->stash) {
        stashed *s = c->stash;
        c->stash = s->next;
        ultrashard__response__free_unpacked(s->r, NULL);
        free(s);
    }
    free(c->address);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    free(c);
}

/* --- pipelined ------------------------------------------------------------------------ */

static pending *find_pending(us_client *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pend; i++)
        if (c->pend[i].id == id)
            return &c->pend[i];
    return NULL;
}

static void drop_pending(us_client *c, pending *p)
{
    free(p->frame);
    *p = c->pend[--c->n_pend];
}

int us_client_send(us_client *c, Ultrashard__Request *req, us_err *err)
{
    if (req->body_case == ULTRASHARD__REQUEST__BODY__NOT_SET)
        return us_err_set(err, US_EINVAL, "client: request without a body");
    req->version = US_CLIENT_PROTOCOL_VERSION;
    if (req->request_id == 0)
        req->request_id = c->next_id++;
    if (find_pending(c, req->request_id) != NULL || req->request_id == UINT64_MAX)
        return us_err_set(err, US_EINVAL, "client: request id %llu is already in flight",
                          (unsigned long long)req->request_id);
    if (c->n_pend == c->cap_pend) {
        size_t cap = c->cap_pend ? 2 * c->cap_pend : 16;
        pending *p = realloc(c->pend, cap * sizeof *p);
        if (p == NULL)
            return us_err_set(err, US_ENOMEM, "client: out of memory");
        c->pend = p;
        c->cap_pend = cap;
    }
    pending p = { .id = req->request_id, .idempotent = us_request_idempotent(req),
                  .generate = req->body_case == ULTRASHARD__REQUEST__BODY_GENERATE };
    int rc = us_frame_pack_request(req, c->o.max_frame_bytes, &p.frame, &p.len, err);
    if (rc != US_OK)
        return rc;
    c->pend[c->n_pend++] = p;
    if (c->fd >= 0 && write_all(c, p.frame, p.len, NULL) == US_OK)
        return US_OK;
    return recover(c, err);   /* resends this one too */
}

/* BUSY / SHUTTING_DOWN for something that may be resent: back off and
 * resend (true), unless the retries are used up. */
static bool retry_busy(us_client *c, pending *p, const Ultrashard__Response *r)
{
    bool busy = r->status == ULTRASHARD__STATUS__STATUS_BUSY ||
                r->status == ULTRASHARD__STATUS__STATUS_SHUTTING_DOWN;
    if (!busy || !(p->idempotent || (p->generate && p->streamed == 0)) ||
        p->retries >= c->o.max_retries)
        return false;
    int delay = c->o.backoff_initial_ms << (p->retries < 16 ? p->retries : 16);
    sleep_ms(delay > c->o.backoff_max_ms ? c->o.backoff_max_ms : delay);
    p->retries++;
    return write_all(c, p->frame, p->len, NULL) == US_OK;
}

/* An answer from the wire, matched to its request. */
static int take_answer(us_client *c, Ultrashard__Response *r, Ultrashard__Response **out,
                       bool *again, us_err *err)
{
    *again = false;
    if (r->request_id == 0) {   /* connection-level error: the server closes */
        int st = (int)r->status;
        int rc = us_err_set(err, st == ULTRASHARD__STATUS__STATUS_UNAUTHENTICATED ? US_EINVAL
                                                                                    : US_EIO,
                            "server: %s: %s", us_status_name(st), r->message);
        ultrashard__response__free_unpacked(r, NULL);
        if (rc == US_EIO && recover(c, err) == US_OK) {
            *again = true;
            return US_OK;
        }
        return rc;
    }
    pending *p = find_pending(c, r->request_id);
    if (p == NULL) {
        int rc = us_err_set(err, US_EPROTO, "%s: answer to request %llu, which is not pending",
                            c->address, (unsigned long long)r->request_id);
        ultrashard__response__free_unpacked(r, NULL);
        return rc;
    }
    if (retry_busy(c, p, r)) {
        ultrashard__response__free_unpacked(r, NULL);
        *again = true;
        return US_OK;
    }
    bool partial = p->generate && r->status == ULTRASHARD__STATUS__STATUS_OK &&
                   r->body_case == ULTRASHARD__RESPONSE__BODY_GENERATE && !r->generate->done;
    if (partial)
        p->streamed++;
    else
        drop_pending(c, p);
    *out = r;
    return US_OK;
}

int us_client_recv(us_client *c, int timeout_ms, Ultrashard__Response **out, us_err *err)
{
    *out = NULL;
    if (c->stash != NULL) {
        stashed *s = c->stash;
        c->stash = s->next;
        *out = s->r;
        free(s);
        return US_OK;
    }
    if (c->n_pend == 0)
        return us_err_set(err, US_EINVAL, "client: no request is pending");
    double deadline = timeout_ms < 0 ? -1.0 : us_now_s() + timeout_ms / 1000.0;
    for (;;) {
        Ultrashard__Response *r = NULL;
        bool timed_out = false, again;
        int rc = c->fd >= 0 ? read_response(c, deadline, &r, &timed_out, err) : US_EIO;
        if (rc != US_OK && (timed_out || rc == US_EPROTO || rc == US_EVERSION))
            return rc;
        if (rc != US_OK) {
            if ((rc = recover(c, err)) != US_OK)
                return rc;
            continue;
        }
        if ((rc = take_answer(c, r, out, &again, err)) != US_OK || !again)
            return rc;
    }
}

void us_client_response_free(Ultrashard__Response *r)
{
    if (r != NULL)
        ultrashard__response__free_unpacked(r, NULL);
}

int us_client_last_status(const us_client *c)
{
    return c->last_status;
}

/* --- blocking ---------------------------------------------------------------------------- */

/* Waits for the next answer to request id (others are stashed for recv). */
static int wait_for(us_client *c, uint64_t id, Ultrashard__Response **out, us_err *err)
{
    int timeout = c->o.io_timeout_ms > 0 ? c->o.io_timeout_ms : -1;
    stashed *keep = c->stash, **tail = &keep;
    c->stash = NULL;   /* recv must read from the wire, not the stash */
    while (*tail)
        tail = &(*tail)->next;
    int rc;
    for (;;) {
        Ultrashard__Response *r;
        if ((rc = us_client_recv(c, timeout, &r, err)) != US_OK)
            break;
        if (r->request_id == id) {
            *out = r;
            break;
        }
        stashed *s = malloc(sizeof *s);
        if (s == NULL) {
            ultrashard__response__free_unpacked(r, NULL);
            rc = us_err_set(err, US_ENOMEM, "client: out of memory");
            break;
        }
        *s = (stashed){ .r = r };
        *tail = s;
        tail = &s->next;
    }
    c->stash = keep;
    return rc;
}

/* Status of a final answer: OK, or the mapped code with the server's message. */
static int check_status(us_client *c, Ultrashard__Response *r, us_err *err)
{
    c->last_status = (int)r->status;
    if (r->status == ULTRASHARD__STATUS__STATUS_OK)
        return US_OK;
    return us_err_set(err, us_status_to_code((int)r->status), "server: %s: %s",
                      us_status_name((int)r->status), r->message);
}

int us_client_call(us_client *c, Ultrashard__Request *req, Ultrashard__Response **out,
                   us_err *err)
{
    *out = NULL;
    int rc = us_client_send(c, req, err);
    while (rc == US_OK) {
        Ultrashard__Response *r;
        if ((rc = wait_for(c, req->request_id, &r, err)) != US_OK)
            break;
        bool partial = r->status == ULTRASHARD__STATUS__STATUS_OK &&
                       r->body_case == ULTRASHARD__RESPONSE__BODY_GENERATE && !r->generate->done;
        if (partial) {
            ultrashard__response__free_unpacked(r, NULL);
            continue;
        }
        if ((rc = check_status(c, r, err)) != US_OK)
            ultrashard__response__free_unpacked(r, NULL);
        else
            *out = r;
        break;
    }
    return rc;
}

int us_client_lookup(us_client *c, const us_client_lookup_args *a, float **out, uint32_t *dim,
                     us_err *err)
{
    *out = NULL;
    Ultrashard__LookupRequest l = ULTRASHARD__LOOKUP_REQUEST__INIT;
    size_t pairs = (size_t)a->n_tokens * a->k;
    l.table = (char *)a->table;
    l.n_tokens = a->n_tokens;
    l.k = a->k;
    l.n_rows = l.n_weights = pairs;
    l.rows = (uint64_t *)a->rows;
    l.weights = (float *)a->weights;
    l.groups.len = a->groups ? pairs : 0;
    l.groups.data = (uint8_t *)a->groups;
    l.n_groups = a->n_groups;
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    req.body_case = ULTRASHARD__REQUEST__BODY_LOOKUP;
    req.lookup = &l;
    Ultrashard__Response *r;
    int rc = us_client_call(c, &req, &r, err);
    if (rc != US_OK)
        return rc;
    uint32_t g = a->n_groups ? a->n_groups : 1;
    if (r->body_case != ULTRASHARD__RESPONSE__BODY_LOOKUP || r->lookup->n_tokens != a->n_tokens ||
        r->lookup->n_groups != g) {
        ultrashard__response__free_unpacked(r, NULL);
        return us_err_set(err, US_EPROTO, "%s: lookup answer's shape differs from the request",
                          c->address);
    }
    *dim = r->lookup->dim;
    *out = malloc(r->lookup->n_sums * sizeof(float) + 1);
    if (*out != NULL)
        memcpy(*out, r->lookup->sums, r->lookup->n_sums * sizeof(float));
    else
        rc = us_err_set(err, US_ENOMEM, "client: out of memory");
    ultrashard__response__free_unpacked(r, NULL);
    return rc;
}

/* Takes one Generate answer: a piece for the callback or the final counts.
 * *done when the request ended. */
static int generate_piece(us_client *c, Ultrashard__Response *r, us_client_tokens_fn fn,
                          void *ctx, us_client_generate_result *res, bool *done, us_err *err)
{
    int rc = check_status(c, r, err);
    *done = rc != US_OK;
    if (rc == US_OK && r->body_case != ULTRASHARD__RESPONSE__BODY_GENERATE)
        rc = us_err_set(err, US_EPROTO, "%s: generate answered without a generate body",
                        c->address);
    if (rc != US_OK) {
        *done = true;
        return rc;
    }
    const Ultrashard__GenerateResponse *g = r->generate;
    if (fn != NULL && g->n_tokens > 0 &&
        fn(ctx, g->tokens, g->n_tokens, g->text.data, g->text.len) != 0) {
        *done = true;
        return us_err_set(err, US_EIO, "client: generate stopped by caller");
    }
    if (g->done) {
        *done = true;
        if (res != NULL) {
            res->prompt_tokens = g->prompt_tokens;
            res->generated_tokens = g->generated_tokens;
            snprintf(res->finish, sizeof res->finish, "%s", g->finish);
        }
    }
    return US_OK;
}

int us_client_generate(us_client *c, const us_client_generate_args *a,
                       us_client_tokens_fn on_tokens, void *ctx,
                       us_client_generate_result *res, us_err *err)
{
    Ultrashard__GenerateRequest g = ULTRASHARD__GENERATE_REQUEST__INIT;
    g.prompt.data = (uint8_t *)a->prompt;
    g.prompt.len = a->prompt_len;
    g.max_tokens = a->max_tokens;
    g.temperature = a->temperature;
    g.top_p = a->top_p;
    g.seed = a->seed;
    g.id = (char *)(a->id ? a->id : "");
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    req.body_case = ULTRASHARD__REQUEST__BODY_GENERATE;
    req.generate = &g;
    int rc = us_client_send(c, &req, err);
    for (bool done = false; rc == US_OK && !done;) {
        Ultrashard__Response *r;
        if ((rc = wait_for(c, req.request_id, &r, err)) != US_OK)
            break;
        rc = generate_piece(c, r, on_tokens, ctx, res, &done, err);
        ultrashard__response__free_unpacked(r, NULL);
    }
    return rc;
}
