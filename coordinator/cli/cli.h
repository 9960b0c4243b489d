/*
 * cli.h — the `ultrashard` executable's subcommand table and option helpers.
 *
 * Each subcommand is `int run(int argc, char **argv)` where argv[0] is the
 * subcommand name; it returns an exit status: 0 success, 1 failure (message
 * already printed), 2 usage error (usage already printed). Subcommands print
 * their usage for --help / -h and return 0.
 */
#ifndef US_CLI_H
#define US_CLI_H

#include <stdbool.h>

#include "coordinator/lookup/lookup.h"
#include "kernels/us_status.h"

#define US_VERSION "0.1.0"

typedef struct us_command {
    const char *name;
    const char *summary;       /* one line for `ultrashard --help` */
    const char *usage;         /* full text for `ultrashard NAME --help` */
    int (*run)(int argc, char **argv);
} us_command;

/* The table (NULL-terminated by name) lives in commands.c. */
extern const us_command us_commands[];

/* Returns: the command named `name`, or NULL. */
const us_command *us_command_find(const char *name);

/* Prints the command's usage to stderr after "ultrashard NAME: msg".
 * Returns: 2 (the usage-error exit status). */
int us_cli_usage_error(const us_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "ultrashard NAME: error: msg" from *err to stderr.
 * Returns: 1 (the failure exit status). */
int us_cli_fail(const char *cmd_name, const us_err *err);

/* Returns: true if argv holds -h or --help (before a "--"). */
bool us_cli_wants_help(int argc, char **argv);

/* Strict number parsing for option values: the whole string must be a number
 * in [min, max].
 * Returns: US_OK, or US_EINVAL with a message naming the option. */
int us_cli_parse_long(const char *option, const char *text, long min, long max,
                      long *out, us_err *err);
int us_cli_parse_double(const char *option, const char *text, double min, double max,
                        double *out, us_err *err);

/* The options of jobs whose memory may live on shard ranks (infer, eval):
 * --transport mpi|fabric sets *transport to the option text, --lookup-mode
 * auto|push|pull sets *mode.
 * Returns: US_OK; US_EINVAL naming the option and the value. */
int us_cli_parse_transport(const char *text, const char **transport, us_err *err);
int us_cli_parse_lookup_mode(const char *text, us_lookup_mode *mode, us_err *err);

#endif
