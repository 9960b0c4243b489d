/* cmd_eval.c — `ultrashard eval`: options, then one job (infer/eval.h). */
#include "coordinator/cli/cmd_eval.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "coordinator/infer/eval.h"

static const struct option long_opts[] = {
    { "model", required_argument, 0, 'm' },
    { "text", required_argument, 0, 'x' },
    { "store", required_argument, 0, 'T' },
    { "json", no_argument, 0, 'j' },
    { "batch-tokens", required_argument, 0, 'B' },
    { "transport", required_argument, 0, 'R' },
    { "lookup-mode", required_argument, 0, 'L' },
    { "quiet", no_argument, 0, 'q' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
};

typedef struct eval_cli {
    us_model_job_opts job;
    us_eval_opts eval;
    bool json;
} eval_cli;

/* Fills *ec from argv; returns -1 to go on, else the exit status (usage
 * error 2, --help 0). */
static int parse_opts(int argc, char **argv, const us_command *cmd, eval_cli *ec)
{
    us_err err = {0};
    long v = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'm': ec->job.model_dir = optarg; break;
        case 'x': ec->eval.text_path = optarg; break;
        case 'T': ec->job.store_dir = optarg; break;
        case 'j': ec->json = true; break;
        case 'q': ec->eval.progress = false; break;
        case 'B':
            if (us_cli_parse_long("--batch-tokens", optarg, 1, 1 << 20, &v, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            ec->eval.batch_tokens = (size_t)v;
            break;
        case 'R':
            if (us_cli_parse_transport(optarg, &ec->job.transport, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'L':
            if (us_cli_parse_lookup_mode(optarg, &ec->job.lookup_mode, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (ec->job.model_dir == NULL || ec->eval.text_path == NULL)
        return us_cli_usage_error(cmd, "--model and --text are required");
    return -1;
}

int us_cmd_eval(int argc, char **argv)
{
    const us_command *cmd = us_command_find("eval");
    eval_cli ec = {
        .job = { .transport = "mpi", .lookup_mode = US_LOOKUP_AUTO, .coordinators = 1 },
        .eval = { .batch_tokens = 256, .progress = true } };
    int st = parse_opts(argc, argv, cmd, &ec);
    if (st >= 0)
        return st;
    ec.job.max_tokens = (uint32_t)ec.eval.batch_tokens;
    us_err err = {0};
    if (us_eval_job_run(&ec.job, &ec.eval, ec.json, &argc, &argv, &err) != US_OK)
        return us_cli_fail("eval", &err);
    return 0;
}
