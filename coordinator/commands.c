/* commands.c — the subcommand table of `ultrashard`. Add one line per command. */
#include "coordinator/cli.h"
#include "coordinator/cmd_bench.h"
#include "coordinator/cmd_roles.h"

const us_command us_commands[] = {
    { "roles", "start MPI, assign coordinator/shard roles, check one collective",
      US_CMD_ROLES_USAGE, us_cmd_roles },
    { "bench", "benchmarks: `bench lookup` (distributed lookup vs single-process gather)",
      US_CMD_BENCH_USAGE, us_cmd_bench },
    { 0 },
};
