/* cli.c — subcommand lookup and option helpers (see cli.h). */
#include "coordinator/cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const us_command *us_command_find(const char *name)
{
    for (const us_command *c = us_commands; c->name != NULL; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int us_cli_usage_error(const us_command *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ultrashard %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n%s", cmd->usage);
    return 2;
}

int us_cli_fail(const char *cmd_name, const us_err *err)
{
    fprintf(stderr, "ultrashard %s: error: %s (%s)\n", cmd_name,
            err->msg[0] ? err->msg : "unknown error", us_code_name(err->code));
    return 1;
}

bool us_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    }
    return false;
}

int us_cli_parse_long(const char *option, const char *text, long min, long max,
                      long *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0')
        return us_err_set(err, US_EINVAL, "%s: '%s' is not an integer", option, text);
    if (v < min || v > max)
        return us_err_set(err, US_EINVAL, "%s: %ld is outside [%ld, %ld]",
                          option, v, min, max);
    *out = v;
    return US_OK;
}

int us_cli_parse_double(const char *option, const char *text, double min, double max,
                        double *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || v != v)
        return us_err_set(err, US_EINVAL, "%s: '%s' is not a number", option, text);
    if (v < min || v > max)
        return us_err_set(err, US_EINVAL, "%s: %g is outside [%g, %g]",
                          option, v, min, max);
    *out = v;
    return US_OK;
}

int us_cli_parse_transport(const char *text, const char **transport, us_err *err)
{
    if (strcmp(text, "mpi") != 0 && strcmp(text, "fabric") != 0)
        return us_err_set(err, US_EINVAL, "--transport: '%s' is not mpi or fabric", text);
    *transport = text;
    return US_OK;
}

int us_cli_parse_lookup_mode(const char *text, us_lookup_mode *mode, us_err *err)
{
    static const char *const names[] = { "auto", "push", "pull" };
    static const us_lookup_mode modes[] = { US_LOOKUP_AUTO, US_LOOKUP_PUSH, US_LOOKUP_PULL };
    for (int i = 0; i < 3; i++)
        if (strcmp(text, names[i]) == 0) {
            *mode = modes[i];
            return US_OK;
        }
    return us_err_set(err, US_EINVAL, "--lookup-mode: '%s' is not auto, push or pull", text);
}
