/* commands.c — the subcommand table of `ultrashard`. Add one line per command. */
#include "coordinator/cli.h"
#include "coordinator/cmd_plan.h"
#include "coordinator/cmd_roles.h"

const us_command us_commands[] = {
    { "roles", "start MPI, assign coordinator/shard roles, check one collective",
      US_CMD_ROLES_USAGE, us_cmd_roles },
    { "plan", "capacity planner: shards, memory per rank, bytes and latency per token",
      US_CMD_PLAN_USAGE, us_cmd_plan },
    { 0 },
};
