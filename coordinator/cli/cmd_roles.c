/* cmd_roles.c — `ultrashard roles`: start MPI, report roles, one collective. */
#include "coordinator/cli/cmd_roles.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "coordinator/cli/cli.h"
#include "proto/world.h"

int us_cmd_roles(int argc, char **argv)
{
    const us_command *cmd = us_command_find("roles");
    us_world_opts opts = {0};
    us_err err = {0};
    static const struct option long_opts[] = {
        { "coordinators", required_argument, 0, 'c' },
        { "all-roles", no_argument, 0, 'a' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        long v;
        switch (ch) {
        case 'c':
            if (us_cli_parse_long("--coordinators", optarg, 1, 1 << 20, &v, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            opts.coordinators = (int)v;
            break;
        case 'a': opts.all_roles = true; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);

    us_world w;
    if (!us_world_detect_mpirun())
        fprintf(stderr, "ultrashard roles: not started under mpirun; "
                        "running as a single rank (use `mpirun -n N`)\n");
    if (us_world_init(&w, &argc, &argv, &opts, &err) != US_OK)
        return us_cli_fail("roles", &err);

    char host[256] = "?";
    gethostname(host, sizeof host);
    printf("rank %d/%d on %s: %s (coordinator %d, shard %d) threads=%d\n",
           w.rank, w.size, host, us_world_role_name(&w), w.coordinator_index,
           w.shard_index, w.thread_level);
    fflush(stdout);

    /* Every rank contributes its rank, its role bits: all must agree. */
    long local[3] = { w.rank, w.is_coordinator, w.is_shard };
    long total[3] = { 0, 0, 0 };
    int status = 0;
    if (MPI_Allreduce(local, total, 3, MPI_LONG, MPI_SUM, w.comm) != MPI_SUCCESS) {
        fprintf(stderr, "ultrashard roles: rank %d: MPI_Allreduce failed\n", w.rank);
        status = 1;
    } else {
        long want_sum = (long)w.size * (w.size - 1) / 2;
        if (total[0] != want_sum || total[1] != w.n_coordinators || total[2] != w.n_shards) {
            fprintf(stderr, "ultrashard roles: rank %d: disagreement: rank sum %ld (want %ld), "
                    "coordinators %ld (want %d), shards %ld (want %d)\n", w.rank,
                    total[0], want_sum, total[1], w.n_coordinators, total[2], w.n_shards);
            status = 1;
        } else if (w.rank == 0) {
            printf("roles ok: %d ranks, %d coordinators, %d shards, allreduce sum %ld\n",
                   w.size, w.n_coordinators, w.n_shards, total[0]);
        }
    }
    us_world_finalize(&w);
    return status;
}
