/* cmd_bench.c — `ultrashard bench NAME`: options, then one call per benchmark
 * (lookup: coordinator/lookup/bench_lookup.h). */
#include "coordinator/cli/cmd_bench.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "coordinator/lookup/bench_lookup.h"
#include "coordinator/lookup/pipe.h"

/* Fills *o from argv; returns -1 to go on, else the exit status (usage
 * error 2, --help 0). */
static int parse_opts(int argc, char **argv, us_bench_lookup_opts *o)
{
    const us_command *cmd = us_command_find("bench");
    static const struct option lo[] = {
        { "transports", 1, 0, 'T' }, { "modes", 1, 0, 'M' }, { "placements", 1, 0, 'P' },
        { "rows", 1, 0, 'r' }, { "dim", 1, 0, 'd' }, { "dtype", 1, 0, 'y' },
        { "tokens", 1, 0, 't' }, { "k", 1, 0, 'k' }, { "batches", 1, 0, 'b' },
        { "hot", 1, 0, 'o' }, { "zipf", 1, 0, 'Z' }, { "threads", 1, 0, 'n' }, { "cache-bytes", 1, 0, 'c' },
        { "coordinators", 1, 0, 'C' }, { "all-roles", 0, 0, 'A' }, { "help", 0, 0, 'h' },
        { "read-us", 1, 0, 'R' }, { "on-the-fly", 0, 0, 'F' },
        { "pipeline", 1, 0, 'D' }, { "cache-always", 0, 0, 'W' },
        { 0, 0, 0, 0 },
    };
    us_err e = {0};
    int ch;
    long v;
    double d;
    optind = 2;   /* argv[1] is the benchmark name */
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'T': snprintf(o->transports, sizeof o->transports, "%s", optarg); break;
        case 'M': snprintf(o->modes, sizeof o->modes, "%s", optarg); break;
        case 'P': snprintf(o->placements, sizeof o->placements, "%s", optarg); break;
        case 'y':
            if (us_dtype_parse(optarg, &o->dtype) != 0)
                return us_cli_usage_error(cmd, "--dtype: unknown '%s'", optarg);
            break;
#define LONGOPT(c, name, lo_, hi_, dst) \
        case c: \
            if (us_cli_parse_long(name, optarg, lo_, hi_, &v, &e)) \
                return us_cli_usage_error(cmd, "%s", e.msg); \
            dst = v; \
            break;
        LONGOPT('r', "--rows", 1, 1l << 40, o->rows)
        LONGOPT('d', "--dim", 1, 65536, o->dim)
        LONGOPT('t', "--tokens", 1, 1 << 20, o->tokens)
        LONGOPT('k', "--k", 1, 4096, o->k)
        LONGOPT('b', "--batches", 1, 1 << 20, o->batches)
        LONGOPT('n', "--threads", 1, 256, o->threads)
        LONGOPT('c', "--cache-bytes", 0, 1l << 40, o->cache_bytes)
        LONGOPT('C', "--coordinators", 1, 1 << 20, o->world.coordinators)
        LONGOPT('D', "--pipeline", 1, US_PIPE_MAX_DEPTH, o->pipeline)
#undef LONGOPT
        case 'o':
            if (us_cli_parse_double("--hot", optarg, 0, 1, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->hot = d;
            break;
        case 'Z':
            if (us_cli_parse_double("--zipf", optarg, 0, 10, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->zipf = d;
            break;
        case 'R':
            if (us_cli_parse_double("--read-us", optarg, 0, 1e6, &d, &e))
                return us_cli_usage_error(cmd, "%s", e.msg);
            o->read_us = d;
            break;
        case 'A': o->world.all_roles = true; break;
        case 'F': o->on_the_fly = true; break;
        case 'W': o->cache_always = true; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default: return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return -1;
}

int us_cmd_bench(int argc, char **argv)
{
    const us_command *cmd = us_command_find("bench");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc >= 2) {
            fputs(cmd->usage, stdout);
            return 0;
        }
        return us_cli_usage_error(cmd, "missing benchmark name");
    }
    if (strcmp(argv[1], "lookup") != 0)
        return us_cli_usage_error(cmd, "unknown benchmark '%s'", argv[1]);
    us_bench_lookup_opts o = us_bench_lookup_defaults();
    int st = parse_opts(argc, argv, &o);
    if (st >= 0)
        return st;
    us_err err = {0};
    return us_bench_lookup_run(&o, &argc, &argv, &err) == US_OK ? 0 : us_cli_fail("bench", &err);
}
