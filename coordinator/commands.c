/* commands.c — the subcommand table of `ultrashard`. Add one line per command. */
#include "coordinator/cli.h"
#include "coordinator/cmd_bench.h"
#include "coordinator/cmd_infer.h"
#include "coordinator/cmd_init_model.h"
#include "coordinator/cmd_plan.h"
#include "coordinator/cmd_roles.h"

const us_command us_commands[] = {
    { "roles", "start MPI, assign coordinator/shard roles, check one collective",
      US_CMD_ROLES_USAGE, us_cmd_roles },
    { "bench", "benchmarks: `bench lookup` (distributed lookup vs single-process gather)",
      US_CMD_BENCH_USAGE, us_cmd_bench },
    { "init-model", "write a random model (config, weights, memory value tables)",
      US_CMD_INIT_MODEL_USAGE, us_cmd_init_model },
    { "infer", "batch inference over a JSONL file of prompts (resumable)",
      US_CMD_INFER_USAGE, us_cmd_infer },
    { "plan", "capacity planner: shards, memory per rank, bytes and latency per token",
      US_CMD_PLAN_USAGE, us_cmd_plan },
    { 0 },
};
