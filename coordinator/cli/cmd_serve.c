/* cmd_serve.c — `ultrashard serve`: options, then the service (serve/serve.h). */
#include "coordinator/cli/cmd_serve.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "coordinator/serve/serve.h"

static const struct option long_opts[] = {
    { "model", required_argument, 0, 'm' },
    { "store", required_argument, 0, 'T' },
    { "listen", required_argument, 0, 'l' },
    { "token-file", required_argument, 0, 'k' },
    { "metrics", required_argument, 0, 'M' },
    { "coordinators", required_argument, 0, 'C' },
    { "max-batch-tokens", required_argument, 0, 'B' },
    { "batch-size", required_argument, 0, 'b' },
    { "batch-window-us", required_argument, 0, 'w' },
    { "max-connections", required_argument, 0, 'c' },
    { "max-frame-bytes", required_argument, 0, 'f' },
    { "idle-timeout-s", required_argument, 0, 'i' },
    { "frame-timeout-ms", required_argument, 0, 'F' },
    { "max-queue", required_argument, 0, 'Q' },
    { "max-request-tokens", required_argument, 0, 'r' },
    { "max-tokens", required_argument, 0, 'n' },
    { "transport", required_argument, 0, 'R' },
    { "lookup-mode", required_argument, 0, 'L' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
};

/* The numeric options. Returns: US_OK, or US_EINVAL naming the option. */
static int parse_number(int ch, const char *arg, us_serve_opts *o, us_err *err)
{
    static const struct { int ch; const char *name; long min, max; } spec[] = {
        { 'C', "--coordinators", 1, 1024 }, { 'B', "--max-batch-tokens", 1, 1 << 20 },
        { 'b', "--batch-size", 1, 4096 }, { 'w', "--batch-window-us", 1, 10000000 },
        { 'c', "--max-connections", 1, 65536 }, { 'f', "--max-frame-bytes", 1024, 1L << 30 },
        { 'i', "--idle-timeout-s", 1, 86400 * 7 }, { 'F', "--frame-timeout-ms", 1, 3600000 },
        { 'Q', "--max-queue", 1, 1 << 24 }, { 'r', "--max-request-tokens", 1, 1L << 30 },
        { 'n', "--max-tokens", 1, 1000000 },
    };
    uint32_t *field[] = { NULL, &o->max_batch_tokens, &o->batch_size, &o->batch_window_us,
                          &o->max_connections, &o->max_frame_bytes, &o->idle_timeout_s,
                          &o->frame_timeout_ms, &o->max_queue, &o->max_request_tokens,
                          &o->default_max_tokens };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        if (spec[i].ch != ch)
            continue;
        long v;
        int rc = us_cli_parse_long(spec[i].name, arg, spec[i].min, spec[i].max, &v, err);
        if (rc == US_OK && i == 0)
            o->coordinators = (int)v;
        else if (rc == US_OK)
            *field[i] = (uint32_t)v;
        return rc;
    }
    return us_err_set(err, US_EINVAL, "unknown option");
}

/* Returns -1 to go on, else the exit status. */
static int parse_opts(int argc, char **argv, const us_command *cmd, us_serve_opts *o)
{
    us_err err = {0};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model_dir = optarg; break;
        case 'T': o->store_dir = optarg; break;
        case 'l': o->listen = optarg; break;
        case 'k': o->token_file = optarg; break;
        case 'M': o->metrics = optarg; break;
        case 'R':
            if (strcmp(optarg, "mpi") != 0 && strcmp(optarg, "fabric") != 0)
                return us_cli_usage_error(cmd, "--transport: '%s' is not mpi or fabric", optarg);
            o->transport = optarg;
            break;
        case 'L':
            if (strcmp(optarg, "auto") == 0)      o->lookup_mode = US_LOOKUP_AUTO;
            else if (strcmp(optarg, "push") == 0) o->lookup_mode = US_LOOKUP_PUSH;
            else if (strcmp(optarg, "pull") == 0) o->lookup_mode = US_LOOKUP_PULL;
            else return us_cli_usage_error(cmd, "--lookup-mode: '%s' is not auto, push or pull",
                                           optarg);
            break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        case '?': return us_cli_usage_error(cmd, "unknown option");
        default:
            if (parse_number(ch, optarg, o, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o->model_dir == NULL || o->listen == NULL)
        return us_cli_usage_error(cmd, "--model and --listen are required");
    return -1;
}

int us_cmd_serve(int argc, char **argv)
{
    const us_command *cmd = us_command_find("serve");
    us_serve_opts o = { .transport = "mpi", .lookup_mode = US_LOOKUP_AUTO };
    int st = parse_opts(argc, argv, cmd, &o);
    if (st >= 0)
        return st;
    us_serve_opts_defaults(&o);
    us_err err = {0};
    if (us_serve_run(&o, &argc, &argv, &err) != US_OK)
        return us_cli_fail("serve", &err);
    return 0;
}
