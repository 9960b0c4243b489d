/* commands.c — the subcommand table of `ultrashard`. Add one line per command. */
#include "coordinator/cli/cli.h"
#include "coordinator/cli/cmd_bench.h"
#include "coordinator/cli/cmd_client.h"
#include "coordinator/cli/cmd_infer.h"
#include "coordinator/cli/cmd_init_model.h"
#include "coordinator/cli/cmd_plan.h"
#include "coordinator/cli/cmd_roles.h"
#include "coordinator/cli/cmd_serve.h"
#include "coordinator/cli/cmd_store.h"

const us_command us_commands[] = {
    { "roles", "start MPI, assign coordinator/shard roles, check one collective",
      US_CMD_ROLES_USAGE, us_cmd_roles },
    { "import", "build a store from .npy/safetensors files (parallel under mpirun)",
      US_CMD_IMPORT_USAGE, us_cmd_import },
    { "inspect", "print a store's tables, bytes per shard and balance",
      US_CMD_INSPECT_USAGE, us_cmd_inspect },
    { "verify", "check every block checksum of a store (parallel under mpirun)",
      US_CMD_VERIFY_USAGE, us_cmd_verify },
    { "reshard", "copy a store to a new shard count, proving every row unchanged",
      US_CMD_RESHARD_USAGE, us_cmd_reshard },
    { "bench", "benchmarks: `bench lookup` (distributed lookup vs single-process gather)",
      US_CMD_BENCH_USAGE, us_cmd_bench },
    { "init-model", "write a random model (config, weights, memory value tables)",
      US_CMD_INIT_MODEL_USAGE, us_cmd_init_model },
    { "infer", "batch inference over a JSONL file of prompts (resumable)",
      US_CMD_INFER_USAGE, us_cmd_infer },
    { "serve", "long-running service: clients send Lookup/Memory/Generate over TCP",
      US_CMD_SERVE_USAGE, us_cmd_serve },
    { "client", "send one request to `serve` (generate, lookup, stats, health)",
      US_CMD_CLIENT_USAGE, us_cmd_client },
    { "plan", "capacity planner: shards, memory per rank, bytes and latency per token",
      US_CMD_PLAN_USAGE, us_cmd_plan },
    { 0 },
};
