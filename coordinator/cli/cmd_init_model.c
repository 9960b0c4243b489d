/* cmd_init_model.c — `ultrashard init-model`: random model + value tables. */
#include "coordinator/cli/cmd_init_model.h"

#include <getopt.h>
#include <stdio.h>

#include "coordinator/cli/cli.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"

int us_cmd_init_model(int argc, char **argv)
{
    const us_command *cmd = us_command_find("init-model");
    const char *preset = NULL, *config = NULL, *out = NULL, *store = NULL;
    long seed = 1, shards = 1;
    us_dtype dtype = US_DTYPE_F32;
    bool force = false;
    us_err err = {0};
    static const struct option long_opts[] = {
        { "preset", required_argument, 0, 'p' },
        { "config", required_argument, 0, 'c' },
        { "out", required_argument, 0, 'o' },
        { "seed", required_argument, 0, 's' },
        { "force", no_argument, 0, 'f' },
        { "store", required_argument, 0, 'S' },
        { "shards", required_argument, 0, 'n' },
        { "store-dtype", required_argument, 0, 'd' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'p': preset = optarg; break;
        case 'c': config = optarg; break;
        case 'o': out = optarg; break;
        case 's':
            if (us_cli_parse_long("--seed", optarg, 0, 0x7fffffffffffffffL, &seed, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'f': force = true; break;
        case 'S': store = optarg; break;
        case 'n':
            if (us_cli_parse_long("--shards", optarg, 1, 4096, &shards, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'd':
            if (us_dtype_parse(optarg, &dtype) != 0)
                return us_cli_usage_error(cmd, "--store-dtype: '%s' is not f32, bf16, f16 or "
                                          "int8", optarg);
            break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if ((preset == NULL) == (config == NULL) || out == NULL)
        return us_cli_usage_error(cmd, "--out and one of --preset or --config are required");
    us_model_config cfg;
    if (preset != NULL && us_model_config_preset(&cfg, preset, &err) != US_OK)
        return us_cli_usage_error(cmd, "%s", err.msg);
    if (config != NULL && us_model_config_load(&cfg, config, &err) != US_OK)
        return us_cli_fail("init-model", &err);
    us_model m;
    if (us_model_alloc(&m, &cfg, &err) != US_OK)
        return us_cli_fail("init-model", &err);
    us_model_init_random(&m, (uint64_t)seed);
    int rc = us_model_save(&m, out, force, &err);
    if (rc == US_OK)
        rc = us_value_tables_write(out, &cfg, (uint64_t)seed, force, &err);
    if (rc == US_OK && store != NULL)
        rc = us_model_store_build(store, &cfg, (uint64_t)seed, (uint32_t)shards, dtype, &err);
    if (rc == US_OK && store != NULL)
        printf("init-model: store %s: %u tables, %ld shards, %s\n", store,
               us_model_config_memory_layers(&cfg), shards, us_dtype_name(dtype));
    if (rc == US_OK)
        printf("init-model: %s -> %s: %llu parameters (%.1f MiB), %u memory tables of "
               "%llu x %u\n", preset ? preset : config, out, (unsigned long long)m.n_params,
               m.n_params * 4.0 / (1 << 20), us_model_config_memory_layers(&cfg),
               (unsigned long long)us_model_config_table_rows(&cfg), cfg.memory.v_dim);
    us_model_free(&m);
    return rc == US_OK ? 0 : us_cli_fail("init-model", &err);
}
