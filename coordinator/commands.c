/* commands.c — the subcommand table of `ultrashard`. Add one line per command. */
#include "coordinator/cli.h"
#include "coordinator/cmd_roles.h"
#include "coordinator/cmd_store.h"

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
    { 0 },
};
