/* cmd_init_model.h — `ultrashard init-model`: write a random model directory. */
#ifndef US_CMD_INIT_MODEL_H
#define US_CMD_INIT_MODEL_H

#define US_CMD_INIT_MODEL_USAGE \
    "usage: ultrashard init-model (--preset NAME | --config FILE) --out DIR\n" \
    "                             [--seed N] [--force]\n" \
    "                             [--store STORE --shards S [--store-dtype D]]\n" \
    "\n" \
    "Writes a random model: DIR/config.json, DIR/weights.safetensors (f32) and\n" \
    "one value table per memory layer, DIR/values/table_<t>.npy (f32 rows of\n" \
    "v_dim; values = synthetic values of (seed, table), uniform in [-1, 1)).\n" \
    "Files are written crash-safely; existing files are refused without --force.\n" \
    "\n" \
    "  --preset NAME   tiny: d 64, 4 layers (dense, memory, moe, dense), 2 heads,\n" \
    "                  segment 16; small: d 256, 8 layers, 4 heads, segment 128;\n" \
    "                  bench-dense, bench-moe (top-2 of 32), bench-ultramem: the\n" \
    "                  paper's comparison scaled down to this machine (d 256,\n" \
    "                  4 layers, segment 2048; 4.2 M activated parameters each,\n" \
    "                  51 M total for MoE and UltraMem), as `make bench-models`\n" \
    "  --config FILE   shape from a config.json (format of DIR/config.json)\n" \
    "  --out DIR       model directory (created if missing)\n" \
    "  --seed N        random seed (default 1)\n" \
    "  --force         replace existing files\n" \
    "  --store STORE   also build a store of the memory tables (table_<t>, id t,\n" \
    "                  same values) for `infer --store` and shard ranks\n" \
    "  --shards S      shard count of that store (default 1)\n" \
    "  --store-dtype D f32 (default, exactly the .npy values), bf16, f16, int8\n"

/* Returns: the exit status (coordinator/cli/cli.h: 0 success, 1 failure with
 * its message printed, 2 usage error). */
int us_cmd_init_model(int argc, char **argv);

#endif
