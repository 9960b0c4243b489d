/* cmd_roles.h — `ultrashard roles`: MPI start-up smoke check. */
#ifndef US_CMD_ROLES_H
#define US_CMD_ROLES_H

#define US_CMD_ROLES_USAGE \
    "usage: mpirun -n N ultrashard roles [--coordinators C] [--all-roles]\n" \
    "\n" \
    "Starts MPI, assigns roles (default rank 0 coordinator, the rest shards),\n" \
    "prints one line per rank, then checks an MPI_Allreduce of the ranks.\n" \
    "Exit 0 when every rank agrees on the roles and the sum.\n" \
    "\n" \
    "  --coordinators C   ranks 0..C-1 are coordinators (default 1)\n" \
    "  --all-roles        every rank is coordinator and shard\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_roles(int argc, char **argv);

#endif
