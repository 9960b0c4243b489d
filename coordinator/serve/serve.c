/* serve.c — the `ultrashard serve` job: roles, model, sockets (serve.h). */
#include "coordinator/serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coordinator/infer/model_job.h"
#include "coordinator/lookup/job.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"
#include "coordinator/serve/server.h"
#include "proto/us_client.h"

void us_serve_opts_defaults(us_serve_opts *o)
{
#define DEF(f, v) if (o->f == 0) o->f = (v)
    DEF(max_batch_tokens, 256);
    DEF(batch_size, 16);
    DEF(batch_window_us, 500);
    DEF(max_connections, 64);
    DEF(max_frame_bytes, 16u << 20);
    DEF(idle_timeout_s, 300);
    DEF(frame_timeout_ms, 10000);
    DEF(max_queue, 1024);
    DEF(max_request_tokens, 1u << 20);
    DEF(default_max_tokens, 64);
#undef DEF
    if (o->batch_size > o->max_batch_tokens)
        o->batch_size = o->max_batch_tokens;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    us_serve_stop_flag = 1;
}

/* Coordinators drain on SIGTERM/SIGINT; shard ranks note and ignore them:
 * they stop when the coordinators have finished. */
static void install_signals(bool coordinator)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = coordinator ? on_stop_signal : SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

/* A non-blocking listening socket on addr's host at its port + offset. */
static int listen_on(const char *what, const char *addr, int offset, bool token, int *out,
                     us_err *err)
{
    char host[256], port[16];
    unsigned p;
    int rc = us_client_parse_address(addr, host, sizeof host, &p, err);
    if (rc != US_OK)
        return us_err_prefix(err, "%s", what);
    if (p + (unsigned)offset > 65535)
        return us_err_set(err, US_EINVAL, "%s %s: port %u + coordinator %d is over 65535",
                          what, addr, p, offset);
    snprintf(port, sizeof port, "%u", p + (unsigned)offset);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return us_err_set(err, US_EINVAL, "%s %s: cannot resolve host \"%s\"", what, addr, host);
    if (!token && !is_loopback(ai->ai_addr)) {
        freeaddrinfo(ai);
        return us_err_set(err, US_EINVAL, "%s %s is not a loopback address: give --token-file "
                          "(clients must authenticate) or listen on 127.0.0.1", what, addr);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        rc = us_err_set(err, US_EIO, "%s %s:%s: %s", what, host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    *out = fd;
    return US_OK;
}

/* What one coordinator holds. */
typedef struct serve_work {
    const us_serve_opts *o;
    const us_world *world;        /* NULL: single process */
    us_memory_dist *dist;
} serve_work;

typedef struct serve_state {
    us_model m;
    us_value_tables vt;
    us_model_store ms;
    us_service srv;
} serve_state;

/* Model and its memory backend (the shards, a store here, or DIR/values). */
static int load_model(const serve_work *sw, serve_state *st, us_err *err)
{
    us_memory_backend be;
    int rc = us_model_load(&st->m, sw->o->model_dir, err);
    if (rc != US_OK)
        return rc;
    if (sw->dist != NULL) {
        us_memory_dist_backend(sw->dist, &be);
    } else if (sw->o->store_dir != NULL) {
        if ((rc = us_model_store_open(&st->ms, sw->o->store_dir, &st->m.cfg, err)) != US_OK)
            return rc;
        us_model_store_backend(&st->ms, &be);
    } else {
        if ((rc = us_value_tables_load(&st->vt, sw->o->model_dir, &st->m.cfg, err)) != US_OK)
            return rc;
        us_value_tables_backend(&st->vt, &be);
    }
    if ((rc = us_model_set_backend(&st->m, &be, err)) != US_OK)
        return rc;
    st->srv.be = be;
    return US_OK;
}

/* Token, sockets, connection table, work buffers. */
static int open_server(const serve_work *sw, serve_state *st, us_err *err)
{
    us_service *s = &st->srv;
    const us_serve_opts *o = sw->o;
    int c = sw->world ? sw->world->coordinator_index : 0, rc;
    s->o = o;
    s->world = sw->world;
    s->dist = sw->dist;
    s->m = &st->m;
    s->start_s = us_now_s();
    s->limits = (us_request_limits){ .max_request_tokens = o->max_request_tokens,
                                     .max_lookup_pairs = o->max_batch_tokens *
                                         us_model_config_lookup_pairs(&st->m.cfg),
                                     .max_dim = st->m.cfg.d_model };
    s->metrics.coordinator = c;
    if (o->token_file != NULL) {
        if ((rc = us_client_read_token(o->token_file, &s->token, err)) != US_OK)
            return rc;
        s->token_len = strlen(s->token);
    }
    if ((rc = listen_on("--listen", o->listen, c, s->token != NULL, &s->listen_fd, err)) != US_OK)
        return rc;
    if (o->metrics != NULL &&
        (rc = listen_on("--metrics", o->metrics, c, s->token != NULL, &s->metrics_fd, err)) !=
            US_OK)
        return rc;
    s->n_conns = o->max_connections + 8;
    if ((s->conns = calloc(s->n_conns, sizeof *s->conns)) == NULL)
        return us_err_set(err, US_ENOMEM, "serve: out of memory for %u connections", s->n_conns);
    for (uint32_t i = 0; i < s->n_conns; i++)
        s->conns[i].fd = -1;
    return serve_work_open(s, err);
}

static void close_server(us_service *s)
{
    serve_work_close(s);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->metrics_fd >= 0)
        close(s->metrics_fd);
    free(s->conns);
    if (s->token != NULL) {
        memset(s->token, 0, s->token_len);
        free(s->token);
    }
}

/* C > 1: every coordinator learns whether all started (a coordinator that
 * cannot listen must not leave the others serving a broken job). */
static int agree_start(const us_world *w, int rc, us_err *err)
{
    if (w == NULL || w->n_coordinators < 2)
        return rc;
    MPI_Group world_group, group;
    MPI_Comm comm;
    if (MPI_Comm_group(w->comm, &world_group) != MPI_SUCCESS ||
        MPI_Group_incl(world_group, w->n_coordinators, w->coordinator_ranks, &group) !=
            MPI_SUCCESS ||
        MPI_Comm_create_group(w->comm, group, 7014, &comm) != MPI_SUCCESS)
        return us_err_set(err, US_EMPI, "serve: cannot make the coordinators' communicator");
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    rc = us_comm_agree(comm, rc, "starting serve", err);
    MPI_Comm_free(&comm);
    return rc;
}

static void print_listening(const us_service *s)
{
    printf("{\"event\":\"serve_listening\",\"coordinator\":%d,\"listen\":\"%s\",\"port_offset\":%d,"
           "\"metrics\":%s%s%s,\"auth\":%s,\"pid\":%d}\n",
           s->world ? s->world->coordinator_index : 0, s->o->listen,
           s->world ? s->world->coordinator_index : 0, s->o->metrics ? "\"" : "",
           s->o->metrics ? s->o->metrics : "null", s->o->metrics ? "\"" : "",
           s->token ? "true" : "false", (int)getpid());
    fflush(stdout);
}

/* The coordinator's job: model, sockets, the loop until drained. */
static int serve_coordinate(void *arg, us_err *err)
{
    const serve_work *sw = arg;
    serve_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return agree_start(sw->world, us_err_set(err, US_ENOMEM, "serve: out of memory"), err);
    st->srv.listen_fd = st->srv.metrics_fd = -1;
    int rc = load_model(sw, st, err);
    if (rc == US_OK)
        rc = open_server(sw, st, err);
    rc = agree_start(sw->world, rc, err);
    if (rc == US_OK) {
        print_listening(&st->srv);
        rc = us_service_loop(&st->srv, err);
        fprintf(stderr, "serve: coordinator %d stopped after %llu requests (%llu errors)\n",
                sw->world ? sw->world->coordinator_index : 0,
                (unsigned long long)st->srv.requests_total,
                (unsigned long long)st->srv.errors_total);
    }
    close_server(&st->srv);
    us_value_tables_free(&st->vt);
    us_model_store_close(&st->ms);
    us_model_free(&st->m);
    free(st);
    return rc;
}

/* The job's work on each coordinator (us_model_job_fn): the world and the
 * shard ranks' values come from the job; stop signals end the serve loop. */
static int serve_job(const us_model_job_ctx *ctx, void *arg, us_err *err)
{
    serve_work *sw = arg;
    sw->world = ctx->world;
    sw->dist = ctx->dist;
    install_signals(true);
    return serve_coordinate(sw, err);
}

int us_serve_run(const us_serve_opts *o, int *argc, char ***argv, us_err *err)
{
    serve_work sw = { .o = o };
    /* Shard-only ranks ignore SIGTERM/SIGINT: coordinators drain, then stop them. */
    install_signals(false);
    const us_model_job_opts mo = {
        .model_dir = o->model_dir, .store_dir = o->store_dir, .transport = o->transport,
        .lookup_mode = o->lookup_mode, .coordinators = o->coordinators,
        .max_tokens = (uint32_t)o->max_batch_tokens };
    return us_model_job_run(&mo, argc, argv, serve_job, &sw, err);
}
