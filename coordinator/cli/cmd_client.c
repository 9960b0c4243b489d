/* cmd_client.c — `ultrashard client`: one request to `ultrashard serve`. */
#include "coordinator/cli/cmd_client.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "proto/us_client.h"
#include "shard/tensorfile.h"

typedef struct client_args {
    const char *connect, *token_file;
    long timeout_ms;
    const char *prompt, *id, *table, *rows, *weights, *groups, *out, *queries;
    long max_tokens, n_groups;
    double temperature, top_p;
    long seed;
} client_args;

static const struct option long_opts[] = {
    { "connect", required_argument, 0, 'c' }, { "token-file", required_argument, 0, 'k' },
    { "timeout-ms", required_argument, 0, 'T' }, { "prompt", required_argument, 0, 'p' },
    { "max-tokens", required_argument, 0, 'n' }, { "temperature", required_argument, 0, 't' },
    { "top-p", required_argument, 0, 'P' }, { "seed", required_argument, 0, 's' },
    { "id", required_argument, 0, 'i' }, { "table", required_argument, 0, 'a' },
    { "rows", required_argument, 0, 'r' }, { "weights", required_argument, 0, 'w' },
    { "groups", required_argument, 0, 'g' }, { "n-groups", required_argument, 0, 'G' },
    { "out", required_argument, 0, 'o' }, { "queries", required_argument, 0, 'q' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
};

static int parse_one(int ch, const char *arg, client_args *a, us_err *err)
{
    switch (ch) {
    case 'c': a->connect = arg; return US_OK;
    case 'k': a->token_file = arg; return US_OK;
    case 'p': a->prompt = arg; return US_OK;
    case 'i': a->id = arg; return US_OK;
    case 'a': a->table = arg; return US_OK;
    case 'r': a->rows = arg; return US_OK;
    case 'w': a->weights = arg; return US_OK;
    case 'g': a->groups = arg; return US_OK;
    case 'o': a->out = arg; return US_OK;
    case 'q': a->queries = arg; return US_OK;
    case 'T': return us_cli_parse_long("--timeout-ms", arg, 1, 86400000, &a->timeout_ms, err);
    case 'n': return us_cli_parse_long("--max-tokens", arg, 1, 1000000, &a->max_tokens, err);
    case 's': return us_cli_parse_long("--seed", arg, 0, INT64_MAX, &a->seed, err);
    case 'G': return us_cli_parse_long("--n-groups", arg, 1, 256, &a->n_groups, err);
    case 't': return us_cli_parse_double("--temperature", arg, 0.0, 100.0, &a->temperature,
                                         err);
    case 'P': return us_cli_parse_double("--top-p", arg, 1e-6, 1.0, &a->top_p, err);
    default:  return us_err_set(err, US_EINVAL, "unknown option");
    }
}

/* --- a small .npy reader for the integer dtypes tensorfile does not read --------------- */

typedef struct npy {
    char descr[8];
    uint64_t shape[2];
    int ndim;
    size_t elem;
    uint8_t *data;
} npy;

/* Reads a 1-d or 2-d .npy (version 1-3, C order) of dtype <i8 <u8 <i4 <f4 |u1 |i1. */
static int npy_read(const char *path, npy *n, us_err *err)
{
    memset(n, 0, sizeof *n);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return us_err_set(err, US_EIO, "%s: cannot open", path);
    uint8_t pre[10];
    char hdr[4096];
    int rc = US_ECORRUPT;
    size_t hl = 0;
    if (fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0) {
        hl = pre[6] == 1 ? (size_t)(pre[8] | pre[9] << 8) : 0;
        if (pre[6] > 1) {
            uint8_t more[2];
            if (fread(more, 1, 2, f) == 2)
                hl = pre[8] | pre[9] << 8 | (size_t)more[0] << 16 | (size_t)more[1] << 24;
        }
    }
    if (hl > 0 && hl < sizeof hdr && fread(hdr, 1, hl, f) == hl) {
        hdr[hl] = '\0';
        char *d = strstr(hdr, "'descr': '"), *s = strstr(hdr, "'shape': (");
        unsigned long long a = 0, b = 0;
        int k = s ? sscanf(s + 10, "%llu, %llu", &a, &b) : 0;
        if (d && s && k >= 1 && strstr(hdr, "'fortran_order': False") &&
            sscanf(d + 10, "%7[^']", n->descr) == 1) {
            n->ndim = k == 2 && strstr(s, ",)") == NULL ? 2 : 1;
            n->shape[0] = a;
            n->shape[1] = n->ndim == 2 ? b : 1;
            rc = US_OK;
        }
    }
    const char *types[] = { "<i8", "<u8", "<i4", "<f4", "|u1", "|i1" };
    const size_t sizes[] = { 8, 8, 4, 4, 1, 1 };
    for (int i = 0; rc == US_OK && i < 6 && n->elem == 0; i++)
        if (strcmp(n->descr, types[i]) == 0)
            n->elem = sizes[i];
    size_t count = (size_t)(n->shape[0] * n->shape[1]);
    if (rc == US_OK && (n->elem == 0 || count == 0 || count > (1u << 28)))
        rc = US_EUNSUPP;
    if (rc == US_OK && ((n->data = malloc(count * n->elem)) == NULL ||
                        fread(n->data, n->elem, count, f) != count))
        rc = US_ECORRUPT;
    fclose(f);
    if (rc != US_OK) {
        free(n->data);
        n->data = NULL;
        return us_err_set(err, rc, "%s: want a C-order .npy of [T][k] %s", path,
                          "int64/uint64/int32/float32/uint8/int8 (non-empty)");
    }
    return US_OK;
}

/* Element i of an integer array, as u64 (negative values are refused). */
static int npy_int(const npy *n, size_t i, uint64_t *v)
{
    int64_t x;
    if (n->elem == 8) {
        memcpy(&x, n->data + 8 * i, 8);
    } else if (n->elem == 4 && n->descr[1] == 'i') {
        int32_t y;
        memcpy(&y, n->data + 4 * i, 4);
        x = y;
    } else if (n->elem == 1) {
        x = n->descr[1] == 'u' ? (int64_t)n->data[i] : (int64_t)(int8_t)n->data[i];
    } else {
        return -1;
    }
    if (x < 0 && strcmp(n->descr, "<u8") != 0)
        return -1;
    *v = (uint64_t)x;
    return 0;
}

/* --- the commands ----------------------------------------------------------------------- */

typedef struct gen_out {
    uint32_t *tokens;
    size_t n, cap;
} gen_out;

static int on_tokens(void *ctx, const uint32_t *tokens, size_t n, const uint8_t *text,
                     size_t text_len)
{
    gen_out *g = ctx;
    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    if (g->n + n > g->cap) {
        size_t cap = (g->n + n) * 2;
        uint32_t *t = realloc(g->tokens, cap * sizeof *t);
        if (t == NULL)
            return 1;
        g->tokens = t;
        g->cap = cap;
    }
    memcpy(g->tokens + g->n, tokens, n * sizeof *tokens);
    g->n += n;
    return 0;
}

static int run_generate(us_client *c, const client_args *a, us_err *err)
{
    us_client_generate_args ga = {
        .prompt = (const uint8_t *)a->prompt, .prompt_len = strlen(a->prompt),
        .max_tokens = (uint32_t)a->max_tokens, .temperature = (float)a->temperature,
        .top_p = (float)a->top_p, .seed = (uint64_t)a->seed, .id = a->id };
    gen_out g = { 0 };
    us_client_generate_result res = { 0 };
    int rc = us_client_generate(c, &ga, on_tokens, &g, &res, err);
    printf("\n");
    if (rc == US_OK) {
        fprintf(stderr, "{\"event\":\"generate_done\",\"tokens\":[");
        for (size_t i = 0; i < g.n; i++)
            fprintf(stderr, "%s%u", i ? "," : "", g.tokens[i]);
        fprintf(stderr, "],\"prompt_tokens\":%u,\"generated_tokens\":%u,\"finish\":\"%s\"}\n",
                res.prompt_tokens, res.generated_tokens, res.finish);
    }
    free(g.tokens);
    return rc;
}

/* Rows, weights and groups of a lookup, checked to share one [T][k] shape. */
static int load_lookup(const client_args *a, npy *r, npy *w, npy *g, uint64_t **rows,
                       uint8_t **groups, uint32_t *n_groups, us_err *err)
{
    int rc;
    if ((rc = npy_read(a->rows, r, err)) != US_OK || (rc = npy_read(a->weights, w, err)) != US_OK ||
        (a->groups && (rc = npy_read(a->groups, g, err)) != US_OK))
        return rc;
    size_t n = (size_t)(r->shape[0] * r->shape[1]);
    if (strcmp(w->descr, "<f4") != 0 || w->shape[0] != r->shape[0] || w->shape[1] != r->shape[1] ||
        (a->groups && (g->shape[0] != r->shape[0] || g->shape[1] != r->shape[1])))
        return us_err_set(err, US_EINVAL, "lookup: weights (f32) and groups must have the rows' "
                          "shape [%llu][%llu]", (unsigned long long)r->shape[0],
                          (unsigned long long)r->shape[1]);
    *rows = malloc(n * sizeof **rows);
    *groups = a->groups ? malloc(n) : NULL;
    if (*rows == NULL || (a->groups && *groups == NULL))
        return us_err_set(err, US_ENOMEM, "lookup: out of memory");
    uint64_t max_g = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t gv = 0;
        if (npy_int(r, i, &(*rows)[i]) != 0 || (a->groups && npy_int(g, i, &gv) != 0) ||
            gv > 255)
            return us_err_set(err, US_EINVAL, "lookup: element %zu of %s is not a valid %s", i,
                              a->groups && gv > 255 ? a->groups : a->rows,
                              a->groups && gv > 255 ? "group id (0..255)" : "row id");
        if (*groups)
            (*groups)[i] = (uint8_t)gv;
        max_g = gv > max_g ? gv : max_g;
    }
    *n_groups = a->groups ? (a->n_groups ? (uint32_t)a->n_groups : (uint32_t)max_g + 1) : 0;
    return US_OK;
}

static int run_lookup(us_client *c, const client_args *a, us_err *err)
{
    if (!a->table || !a->rows || !a->weights || !a->out)
        return us_err_set(err, US_EINVAL, "lookup needs --table, --rows, --weights and --out");
    npy r, w, g = { 0 };
    uint64_t *rows = NULL;
    uint8_t *groups = NULL;
    uint32_t n_groups = 0, dim = 0;
    float *out = NULL;
    int rc = load_lookup(a, &r, &w, &g, &rows, &groups, &n_groups, err);
    if (rc == US_OK) {
        us_client_lookup_args la = { .table = a->table, .n_tokens = (uint32_t)r.shape[0],
                                     .k = (uint32_t)r.shape[1], .rows = rows,
                                     .weights = (const float *)w.data, .groups = groups,
                                     .n_groups = n_groups };
        rc = us_client_lookup(c, &la, &out, &dim, err);
    }
    if (rc == US_OK) {
        us_tensor_desc d = { .name = "sums", .dtype = US_DTYPE_F32, .data = out };
        d.ndim = groups ? 3 : 2;
        d.shape[0] = r.shape[0];
        d.shape[1] = groups ? n_groups : dim;
        d.shape[2] = dim;
        rc = us_tf_write(a->out, US_TF_NPY, &d, 1, true, err);
    }
    free(out);
    free(rows);
    free(groups);
    free(r.data);
    free(w.data);
    free(g.data);
    return rc;
}

/* The remote memory layer: H [T][d] f32 in, the layer's output [T][d] out
 * (and the selection's shape on stdout). */
static int run_memory(us_client *c, const client_args *a, us_err *err)
{
    if (!a->table || !a->queries || !a->out)
        return us_err_set(err, US_EINVAL, "memory needs --table, --queries and --out");
    npy h;
    int rc = npy_read(a->queries, &h, err);
    if (rc != US_OK)
        return rc;
    Ultrashard__MemoryRequest m = ULTRASHARD__MEMORY_REQUEST__INIT;
    m.table = (char *)a->table;
    m.n_tokens = (uint32_t)h.shape[0];
    m.dim = (uint32_t)h.shape[1];
    m.n_queries = (size_t)(h.shape[0] * h.shape[1]);
    m.queries = (float *)h.data;
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    req.body_case = ULTRASHARD__REQUEST__BODY_MEMORY;
    req.memory = &m;
    Ultrashard__Response *r = NULL;
    if (strcmp(h.descr, "<f4") != 0 || h.ndim != 2)
        rc = us_err_set(err, US_EINVAL, "%s: want f32 [T][d_model]", a->queries);
    if (rc == US_OK)
        rc = us_client_call(c, &req, &r, err);
    if (rc == US_OK && r->body_case != ULTRASHARD__RESPONSE__BODY_MEMORY)
        rc = us_err_set(err, US_EPROTO, "memory answered without a memory body");
    if (rc == US_OK) {
        us_tensor_desc d = { .name = "output", .dtype = US_DTYPE_F32, .ndim = 2,
                             .shape = { r->memory->n_tokens, r->memory->dim },
                             .data = r->memory->output };
        rc = us_tf_write(a->out, US_TF_NPY, &d, 1, true, err);
        printf("{\"n_tokens\":%u,\"k\":%u,\"first_rows\":[", r->memory->n_tokens, r->memory->k);
        for (size_t i = 0; i < r->memory->k && i < r->memory->n_rows; i++)
            printf("%s%" PRIu64, i ? "," : "", r->memory->rows[i]);
        printf("]}\n");
    }
    us_client_response_free(r);
    free(h.data);
    return rc;
}

static void print_stats(const Ultrashard__StatsResponse *s)
{
    printf("{\"coordinator\":%u,\"coordinators\":%u,\"shards\":%u,\"uptime_ms\":%" PRIu64
           ",\"connections\":%u,\"queue_depth\":%u,\"active_generates\":%u,\"requests_total\":%"
           PRIu64 ",\"errors_total\":%" PRIu64 ",\"cycles\":%" PRIu64 ",\"d_model\":%u,"
           "\"vocab\":%u,\"max_frame_bytes\":%u,\"max_request_tokens\":%u,"
           "\"max_lookup_pairs\":%u,\"tables\":[", s->coordinator, s->coordinators, s->shards,
           s->uptime_ms, s->connections, s->queue_depth, s->active_generates, s->requests_total,
           s->errors_total, s->cycles, s->d_model, s->vocab, s->max_frame_bytes,
           s->max_request_tokens, s->max_lookup_pairs);
    for (size_t i = 0; i < s->n_tables; i++) {
        const Ultrashard__TableInfo *t = s->tables[i];
        printf("%s{\"name\":\"%s\",\"rows\":%" PRIu64 ",\"dim\":%u,\"n_groups\":%u,\"max_k\":%u,"
               "\"memory_layer\":%u}", i ? "," : "", t->name, t->rows, t->dim, t->n_groups,
               t->max_k, t->memory_layer);
    }
    printf("]}\n");
}

/* stats / health. Returns the exit status part: 0, or 1 for a draining server. */
static int run_info(us_client *c, bool stats, int *exit_status, us_err *err)
{
    Ultrashard__Request req = ULTRASHARD__REQUEST__INIT;
    Ultrashard__StatsRequest sr = ULTRASHARD__STATS_REQUEST__INIT;
    Ultrashard__HealthRequest hr = ULTRASHARD__HEALTH_REQUEST__INIT;
    req.body_case = stats ? ULTRASHARD__REQUEST__BODY_STATS : ULTRASHARD__REQUEST__BODY_HEALTH;
    if (stats)
        req.stats = &sr;
    else
        req.health = &hr;
    Ultrashard__Response *r;
    int rc = us_client_call(c, &req, &r, err);
    if (rc != US_OK)
        return rc;
    if (stats && r->body_case == ULTRASHARD__RESPONSE__BODY_STATS)
        print_stats(r->stats);
    else if (!stats && r->body_case == ULTRASHARD__RESPONSE__BODY_HEALTH) {
        printf("{\"serving\":%s,\"state\":\"%s\"}\n", r->health->serving ? "true" : "false",
               r->health->state);
        *exit_status = r->health->serving ? 0 : 1;
    } else
        rc = us_err_set(err, US_EPROTO, "answer without the expected body");
    us_client_response_free(r);
    return rc;
}

/* Parses options from optind on; returns -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, const us_command *cmd, const char *opts,
                      client_args *a)
{
    int ch;
    us_err err = {0};
    while ((ch = getopt_long(argc, argv, opts, long_opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(cmd->usage, stdout);
            return 0;
        }
        if (ch == '?' || parse_one(ch, optarg, a, &err) != US_OK)
            return us_cli_usage_error(cmd, "%s", ch == '?' ? "unknown option" : err.msg);
    }
    return -1;
}

static int run_command(us_client *c, const char *sub, const client_args *a, int *exit_status,
                       us_err *err)
{
    if (strcmp(sub, "generate") == 0)
        return run_generate(c, a, err);
    if (strcmp(sub, "lookup") == 0)
        return run_lookup(c, a, err);
    if (strcmp(sub, "memory") == 0)
        return run_memory(c, a, err);
    return run_info(c, strcmp(sub, "stats") == 0, exit_status, err);
}

int us_cmd_client(int argc, char **argv)
{
    const us_command *cmd = us_command_find("client");
    client_args a = { .max_tokens = 0, .top_p = 1.0 };
    optind = 1;
    int st = parse_opts(argc, argv, cmd, "+h", &a);
    if (st >= 0)
        return st;
    if (optind >= argc)
        return us_cli_usage_error(cmd, "a command is required (generate, lookup, memory, stats, health)");
    const char *sub = argv[optind];
    if (strcmp(sub, "generate") && strcmp(sub, "lookup") && strcmp(sub, "memory") &&
        strcmp(sub, "stats") && strcmp(sub, "health"))
        return us_cli_usage_error(cmd, "unknown command '%s'", sub);
    optind++;
    if ((st = parse_opts(argc, argv, cmd, "h", &a)) >= 0)
        return st;
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a.connect == NULL)
        return us_cli_usage_error(cmd, "--connect HOST:PORT is required");
    if (strcmp(sub, "generate") == 0 && a.prompt == NULL)
        return us_cli_usage_error(cmd, "generate needs --prompt");
    us_err err = {0};
    char *token = NULL;
    us_client *c = NULL;
    int rc = a.token_file ? us_client_read_token(a.token_file, &token, &err) : US_OK, exit_st = 0;
    us_client_opts co = { .address = a.connect, .token = token,
                          .io_timeout_ms = (int)a.timeout_ms };
    if (rc == US_OK)
        rc = us_client_open(&c, &co, &err);
    if (rc == US_OK)
        rc = run_command(c, sub, &a, &exit_st, &err);
    us_client_close(c);
    free(token);
    if (rc != US_OK)
        return us_cli_fail("client", &err);
    return exit_st;
}
