/* cmd_store.h — store subcommands: import, inspect, verify, reshard (shard/ does the work). */
#ifndef US_CMD_STORE_H
#define US_CMD_STORE_H

#define US_CMD_IMPORT_USAGE \
    "usage: [mpirun -n N] ultrashard import --out DIR --table NAME=FILE[#TENSOR] ...\n" \
    "                 [--synthetic NAME=ROWSxDIM] [--dtype keep|f32|bf16|f16|int8]\n" \
    "                 [--shards S] [--block-bits B] [--seed SEED] [--synthetic-seed X] [--quiet]\n" \
    "\n" \
    "Builds a new store in DIR (which must not exist) from .npy / safetensors\n" \
    "files, one 2-D tensor (rows x dim) per table; repeat --table for several\n" \
    "tables (memory layers). Every rank reads and writes only the blocks of the\n" \
    "shards it builds (shard s is built by rank s mod N). Crash-safe: the store\n" \
    "appears under DIR only when complete; on any error nothing is left. After a\n" \
    "crash, the same command resumes (shard files already written are kept).\n" \
    "\n" \
    "  --table NAME=FILE[#TENSOR]  table from FILE (tensor TENSOR of a safetensors file;\n" \
    "                              default: the file's only tensor)\n" \
    "  --synthetic NAME=ROWSxDIM   a synthetic table: values computed, nothing stored\n" \
    "  --dtype D         stored dtype: keep (default: as in the file), f32, bf16, f16,\n" \
    "                    int8 (symmetric per-row quantisation with an f32 scale)\n" \
    "  --shards S        shard count of the store (default: N, the number of ranks)\n" \
    "  --block-bits B    rows per block = 2^B (default 12 = 4096 rows)\n" \
    "  --seed SEED       placement seed (default 0)\n" \
    "  --synthetic-seed X  value seed of synthetic tables (default 0)\n" \
    "  --quiet           no progress lines\n"

#define US_CMD_INSPECT_USAGE \
    "usage: ultrashard inspect DIR [--json]\n" \
    "\n" \
    "Prints the store's manifest: tables (rows, dim, dtype, blocks), bytes and\n" \
    "blocks per shard, and the balance (max/mean blocks per shard). Checks the\n" \
    "manifest (CRC, fields, placement) but reads no block data.\n" \
    "\n" \
    "  --json   one JSON object per table and one for the store, instead of text\n"

#define US_CMD_VERIFY_USAGE \
    "usage: [mpirun -n N] ultrashard verify DIR [--expect-shards S]\n" \
    "                 [--against NAME=FILE[#TENSOR]] ...\n" \
    "\n" \
    "Checks every block's CRC-32C (rank r checks shards r, r+N, ...), and every\n" \
    "shard file's presence and size. Each bad block is reported naming the table,\n" \
    "the block and the file. Exit 0 only when everything is intact.\n" \
    "\n" \
    "  --expect-shards S  fail unless the store has S shards (shard count mismatch)\n" \
    "  --against NAME=FILE[#TENSOR]  also compare every row of table NAME with the\n" \
    "                    tensor file, converted as import stores it (bit-exact)\n"

#define US_CMD_RESHARD_USAGE \
    "usage: ultrashard reshard --shards S2 SRC DST\n" \
    "\n" \
    "Writes a copy of store SRC with S2 shards to DST (which must not exist), as\n" \
    "one process. Only blocks whose owner changes move between shards; every row\n" \
    "of the new store is compared with the old one by its CRC-32C before DST\n" \
    "appears. Prints moved blocks and the row proof.\n"

/* Each returns the exit status (coordinator/cli/cli.h: 0 success, 1 failure
 * with its message printed, 2 usage error). */
int us_cmd_import(int argc, char **argv);
int us_cmd_inspect(int argc, char **argv);
int us_cmd_verify(int argc, char **argv);
int us_cmd_reshard(int argc, char **argv);

#endif
