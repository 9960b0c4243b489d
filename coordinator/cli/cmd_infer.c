/* cmd_infer.c — `ultrashard infer`: options, then one job (infer/infer_job.h). */
#include "coordinator/cli/cmd_infer.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "coordinator/infer/infer_job.h"
#include "coordinator/infer/prompts.h"

static const struct option long_opts[] = {
    { "model", required_argument, 0, 'm' },
    { "input", required_argument, 0, 'i' },
    { "output", required_argument, 0, 'o' },
    { "batch", required_argument, 0, 'b' },
    { "batch-tokens", required_argument, 0, 'B' },
    { "max-tokens", required_argument, 0, 'n' },
    { "temperature", required_argument, 0, 't' },
    { "top-p", required_argument, 0, 'p' },
    { "seed", required_argument, 0, 's' },
    { "max-prompt-bytes", required_argument, 0, 'P' },
    { "step-delay-ms", required_argument, 0, 'd' },
    { "sessions", required_argument, 0, 'S' },
    { "store", required_argument, 0, 'T' },
    { "transport", required_argument, 0, 'R' },
    { "lookup-mode", required_argument, 0, 'L' },
    { "coordinators", required_argument, 0, 'C' },
    { "scrub-mb-per-s", required_argument, 0, 'X' },
    { "quiet", no_argument, 0, 'q' },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
};

/* The numeric options: US_OK, or US_EINVAL / US_ERANGE naming the option. */
static int parse_number(int ch, const char *arg, us_infer_job_opts *jo, us_err *err)
{
    us_infer_opts *o = &jo->infer;
    long v = 0;
    double x = 0;
    int rc;
    switch (ch) {
    case 'b':
        rc = us_cli_parse_long("--batch", arg, 1, 4096, &v, err);
        o->batch_size = (size_t)v;
        return rc;
    case 'B':
        rc = us_cli_parse_long("--batch-tokens", arg, 1, 1 << 20, &v, err);
        o->batch_tokens = (size_t)v;
        return rc;
    case 'n':
        rc = us_cli_parse_long("--max-tokens", arg, 0, US_PROMPT_MAX_TOKENS, &v, err);
        jo->max_tokens = (uint32_t)v;
        return rc;
    case 't':
        rc = us_cli_parse_double("--temperature", arg, 0.0, 100.0, &x, err);
        o->sampling.temperature = (float)x;
        return rc;
    case 'p':
        rc = us_cli_parse_double("--top-p", arg, 1e-6, 1.0, &x, err);
        o->sampling.top_p = (float)x;
        return rc;
    case 's':
        rc = us_cli_parse_long("--seed", arg, 0, 0x7fffffffffffffffL, &v, err);
        o->seed = (uint64_t)v;
        return rc;
    case 'P':
        rc = us_cli_parse_long("--max-prompt-bytes", arg, 0, 1L << 30, &v, err);
        jo->max_prompt_bytes = (size_t)v;
        return rc;
    case 'C':
        rc = us_cli_parse_long("--coordinators", arg, 1, 1 << 20, &v, err);
        jo->coordinators = (int)v;
        return rc;
    case 'X':
        return us_cli_parse_double("--scrub-mb-per-s", arg, 0.0, 1e6, &jo->scrub_mb_per_s, err);
    default:   /* 'd' */
        rc = us_cli_parse_long("--step-delay-ms", arg, 0, 60000, &v, err);
        o->step_delay_ms = (uint32_t)v;
        return rc;
    }
}

/* Fills *jo from argv; returns -1 to go on, else the exit status (usage
 * error 2, --help 0). */
static int parse_opts(int argc, char **argv, const us_command *cmd, us_infer_job_opts *jo)
{
    us_err err = {0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'm': jo->model_dir = optarg; break;
        case 'i': jo->input = optarg; break;
        case 'o': jo->output = optarg; break;
        case 'S': jo->infer.sessions_dir = optarg; break;
        case 'T': jo->store_dir = optarg; break;
        case 'R':
            if (us_cli_parse_transport(optarg, &jo->transport, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'L':
            if (us_cli_parse_lookup_mode(optarg, &jo->lookup_mode, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'q': jo->infer.progress = false; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        case 'b': case 'B': case 'n': case 't': case 'p': case 's': case 'P': case 'd':
        case 'C': case 'X':
            if (parse_number(ch, optarg, jo, &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (jo->model_dir == NULL || jo->input == NULL || jo->output == NULL)
        return us_cli_usage_error(cmd, "--model, --input and --output are required");
    if (jo->infer.batch_tokens < jo->infer.batch_size)
        return us_cli_usage_error(cmd, "--batch-tokens (%zu) must be >= --batch (%zu)",
                                  jo->infer.batch_tokens, jo->infer.batch_size);
    return -1;
}

int us_cmd_infer(int argc, char **argv)
{
    const us_command *cmd = us_command_find("infer");
    us_infer_job_opts jo = {
        .transport = "mpi", .lookup_mode = US_LOOKUP_AUTO, .max_tokens = 64,
        .max_prompt_bytes = 1 << 20,
        .infer = { .batch_size = 16, .batch_tokens = 256,
                   .sampling = { .temperature = 0.0f, .top_p = 1.0f }, .progress = true } };
    int st = parse_opts(argc, argv, cmd, &jo);
    if (st >= 0)
        return st;
    us_err err = {0};
    if (us_infer_job_run(&jo, &argc, &argv, &err) != US_OK)
        return us_cli_fail("infer", &err);
    return 0;
}
