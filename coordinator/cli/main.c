/*
 * main.c — `ultrashard`: one executable, many subcommands (see cli.h).
 * Only main() may exit; subcommands return their status.
 */
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: ultrashard [--version] [--help] COMMAND [ARGS]\n"
            "\n"
            "UltraShard: a distributed, sharded value store for memory-layer language\n"
            "models. Run distributed commands under mpirun, e.g.\n"
            "  mpirun -n 4 ultrashard roles\n"
            "\n"
            "commands:\n");
    for (const us_command *c = us_commands; c->name != NULL; c++)
        fprintf(out, "  %-14s %s\n", c->name, c->summary);
    fprintf(out, "\n`ultrashard COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "version") == 0) {
        printf("ultrashard %s\n", US_VERSION);
        return 0;
    }
    const us_command *cmd = us_command_find(arg);
    if (cmd == NULL) {
        fprintf(stderr, "ultrashard: unknown command or option '%s'\n\n", arg);
        print_usage(stderr);
        return 2;
    }
    return cmd->run(argc - 1, argv + 1);
}
