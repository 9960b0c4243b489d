/*
 * cmd_store.c — `ultrashard import | inspect | verify | reshard`: option
 * parsing and reporting only; the work is in shard/ (import.h, store.h,
 * reshard.h). import and verify run under mpirun (or as one rank).
 */
#include "coordinator/cli/cmd_store.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "proto/world.h"
#include "shard/import.h"
#include "shard/reshard.h"
#include "shard/store.h"

/* Splits "NAME=FILE[#TENSOR]" in place. */
static int parse_table_arg(char *arg, us_import_table *t, us_err *err)
{
    char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || eq[1] == '\0')
        return us_err_set(err, US_EINVAL, "--table '%s': want NAME=FILE[#TENSOR]", arg);
    *eq = '\0';
    memset(t, 0, sizeof *t);
    t->name = arg;
    t->path = eq + 1;
    char *hash = strrchr(t->path, '#');
    if (hash != NULL) {
        *hash = '\0';
        t->tensor = hash + 1;
    }
    return US_OK;
}

static int parse_synthetic_arg(char *arg, us_import_table *t, us_err *err)
{
    char *eq = strchr(arg, '=');
    unsigned long long rows;
    unsigned dim;
    char tail;
    if (eq == NULL || eq == arg || sscanf(eq + 1, "%llux%u%c", &rows, &dim, &tail) != 2)
        return us_err_set(err, US_EINVAL, "--synthetic '%s': want NAME=ROWSxDIM", arg);
    *eq = '\0';
    memset(t, 0, sizeof *t);
    t->name = arg;
    t->synthetic = true;
    t->rows = rows;
    t->dim = dim;
    return US_OK;
}

int us_cmd_import(int argc, char **argv)
{
    const us_command *cmd = us_command_find("import");
    us_err err = {0};
    us_import_opts o = { .block_bits = 12, .keep_dtype = true, .progress = true };
    us_import_table tables[256];
    size_t n = 0;
    long shards = 0;
    static const struct option long_opts[] = {
        { "out", required_argument, 0, 'o' },
        { "table", required_argument, 0, 't' },
        { "synthetic", required_argument, 0, 'y' },
        { "dtype", required_argument, 0, 'd' },
        { "shards", required_argument, 0, 's' },
        { "block-bits", required_argument, 0, 'b' },
        { "seed", required_argument, 0, 'e' },
        { "synthetic-seed", required_argument, 0, 'x' },
        { "quiet", no_argument, 0, 'q' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        long v;
        switch (ch) {
        case 'o': o.out_dir = optarg; break;
        case 't':
        case 'y':
            if (n == sizeof tables / sizeof tables[0])
                return us_cli_usage_error(cmd, "at most %zu tables", n);
            if ((ch == 't' ? parse_table_arg(optarg, &tables[n], &err)
                           : parse_synthetic_arg(optarg, &tables[n], &err)) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
            n++;
            break;
        case 'd':
            if (strcmp(optarg, "keep") == 0) {
                o.keep_dtype = true;
            } else if (us_dtype_parse(optarg, &o.dtype) == 0) {
                o.keep_dtype = false;
            } else {
                return us_cli_usage_error(cmd, "--dtype: unknown dtype '%s'", optarg);
            }
            break;
        case 's':
            if (us_cli_parse_long("--shards", optarg, 1, US_MAX_SHARDS, &shards, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            break;
        case 'b':
            if (us_cli_parse_long("--block-bits", optarg, 0, US_MAX_BLOCK_BITS, &v, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            o.block_bits = (uint32_t)v;
            break;
        case 'e':
        case 'x': {
            char *end;
            unsigned long long s = strtoull(optarg, &end, 0);
            if (*optarg == '\0' || *end != '\0' || *optarg == '-')
                return us_cli_usage_error(cmd, "%s: '%s' is not an unsigned integer",
                                          ch == 'e' ? "--seed" : "--synthetic-seed", optarg);
            if (ch == 'e')
                o.placement_seed = s;
            else
                o.synthetic_seed = s;
            break;
        }
        case 'q': o.progress = false; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o.out_dir == NULL)
        return us_cli_usage_error(cmd, "--out DIR is required");
    if (n == 0)
        return us_cli_usage_error(cmd, "give at least one --table or --synthetic");

    us_world w;
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&w, &argc, &argv, &wo, &err) != US_OK)
        return us_cli_fail("import", &err);
    o.shards = shards > 0 ? (uint32_t)shards : (uint32_t)w.size;
    us_import_stats st = {0};
    int rc = us_import(w.comm, &o, tables, n, &st, &err);
    int status = 0;
    if (rc != US_OK) {
        fprintf(stderr, "ultrashard import: rank %d: error: %s (%s)\n", w.rank, err.msg,
                us_code_name(err.code));
        status = 1;
    } else if (w.rank == 0) {
        printf("import: %zu tables, %u shards, %d ranks: %llu blocks, %.1f MB read, "
               "%.1f MB written in %.2f s -> %s\n", n, o.shards, w.size,
               (unsigned long long)st.blocks, st.bytes_read / 1e6, st.bytes_written / 1e6,
               st.seconds, o.out_dir);
        if (st.resumed_files > 0)
            printf("import: resumed after a crash: kept %llu shard files already written\n",
                   (unsigned long long)st.resumed_files);
        printf("{\"event\":\"import\",\"tables\":%zu,\"shards\":%u,\"ranks\":%d,\"blocks\":%llu,"
               "\"bytes_read\":%llu,\"bytes_written\":%llu,\"seconds\":%.6f}\n", n, o.shards,
               w.size, (unsigned long long)st.blocks, (unsigned long long)st.bytes_read,
               (unsigned long long)st.bytes_written, st.seconds);
    }
    us_world_finalize(&w);
    return status;
}

static void print_identity(const char *dir, const us_manifest *m)
{
    printf("store %s: format %u, %u shards, %zu tables\n", dir, m->format_version,
           m->shard_count, m->n_tables);
    if (m->format_version == US_STORE_FORMAT_NO_HEADER)
        printf("  identity: unchecked (format 1: shard files carry no header; a swapped "
               "file is caught only by block checksums)\n");
    else
        printf("  identity: store id %016llx%016llx in every shard file header\n",
               (unsigned long long)m->store_id_hi, (unsigned long long)m->store_id_lo);
}

int us_cmd_inspect(int argc, char **argv)
{
    const us_command *cmd = us_command_find("inspect");
    bool json = false;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-') {
            return us_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (dir == NULL) {
            dir = argv[i];
        } else {
            return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (dir == NULL)
        return us_cli_usage_error(cmd, "no store directory given");
    us_err err = {0};
    us_manifest m;
    if (us_manifest_read(dir, &m, &err) != US_OK)
        return us_cli_fail("inspect", &err);
    uint64_t *bytes = calloc(m.shard_count, sizeof *bytes);
    uint64_t *blocks = calloc(m.shard_count, sizeof *blocks);
    if (bytes == NULL || blocks == NULL) {
        free(bytes);
        free(blocks);
        us_manifest_free(&m);
        us_err_set(&err, US_ENOMEM, "out of memory");
        return us_cli_fail("inspect", &err);
    }
    if (!json)
        print_identity(dir, &m);
    uint64_t total_blocks = 0;
    for (size_t i = 0; i < m.n_tables; i++) {
        const us_table_layout *t = &m.tables[i];
        uint64_t stored = 0;
        if (!t->synthetic)
            for (uint32_t s = 0; s < m.shard_count; s++) {
                uint64_t k = us_layout_shard_blocks(t, m.shard_count, s, NULL);
                blocks[s] += k;
                bytes[s] += us_layout_file_bytes(t, k);
                stored += us_layout_file_bytes(t, k);
            }
        if (!t->synthetic)
            total_blocks += t->n_blocks;
        if (json)
            printf("{\"table\":\"%s\",\"id\":%u,\"rows\":%llu,\"dim\":%u,\"dtype\":\"%s\","
                   "\"block_rows\":%llu,\"blocks\":%llu,\"synthetic\":%s,\"bytes\":%llu}\n",
                   t->name, t->table_id, (unsigned long long)t->rows, t->dim,
                   us_dtype_name(t->dtype), (unsigned long long)t->rows_per_block,
                   (unsigned long long)t->n_blocks, t->synthetic ? "true" : "false",
                   (unsigned long long)stored);
        else
            printf("  table %u '%s': %llu rows x %u %s, %llu blocks of %llu rows%s, %.1f MB\n",
                   t->table_id, t->name, (unsigned long long)t->rows, t->dim,
                   us_dtype_name(t->dtype), (unsigned long long)t->n_blocks,
                   (unsigned long long)t->rows_per_block,
                   t->synthetic ? " (synthetic: no storage)" : "", stored / 1e6);
    }
    uint64_t max_blocks = 0, total_bytes = 0;
    for (uint32_t s = 0; s < m.shard_count; s++) {
        max_blocks = blocks[s] > max_blocks ? blocks[s] : max_blocks;
        total_bytes += bytes[s];
        if (!json)
            printf("  shard %u: %llu blocks, %.1f MB\n", s, (unsigned long long)blocks[s],
                   bytes[s] / 1e6);
    }
    double mean = (double)total_blocks / m.shard_count;
    double balance = mean > 0 ? max_blocks / mean : 1.0;
    if (json)
        printf("{\"store\":\"%s\",\"shards\":%u,\"tables\":%zu,\"blocks\":%llu,\"bytes\":%llu,"
               "\"balance_max_over_mean\":%.4f}\n", dir, m.shard_count, m.n_tables,
               (unsigned long long)total_blocks, (unsigned long long)total_bytes, balance);
    else
        printf("  total %llu blocks, %.1f MB; balance max/mean blocks per shard %.3f\n",
               (unsigned long long)total_blocks, total_bytes / 1e6, balance);
    free(bytes);
    free(blocks);
    us_manifest_free(&m);
    return 0;
}

int us_cmd_verify(int argc, char **argv)
{
    const us_command *cmd = us_command_find("verify");
    const char *dir = NULL;
    us_import_table against[64];
    size_t n_against = 0;
    long expect_shards = 0;
    us_err err = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--expect-shards") == 0 && i + 1 < argc) {
            if (us_cli_parse_long("--expect-shards", argv[++i], 1, US_MAX_SHARDS,
                                  &expect_shards, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
        } else if (strcmp(argv[i], "--against") == 0 && i + 1 < argc) {
            if (n_against == 64)
                return us_cli_usage_error(cmd, "at most 64 --against");
            if (parse_table_arg(argv[++i], &against[n_against++], &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
        } else if (argv[i][0] == '-') {
            return us_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (dir == NULL) {
            dir = argv[i];
        } else {
            return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (dir == NULL)
        return us_cli_usage_error(cmd, "no store directory given");

    us_world w;
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&w, &argc, &argv, &wo, &err) != US_OK)
        return us_cli_fail("verify", &err);
    double t0 = MPI_Wtime();
    /* every rank reads the manifest; rank r checks shards r, r + size, ... */
    us_manifest m;
    uint64_t local[5] = { 0, 0, 0, 0, 0 };  /* files, blocks, bad, bytes, rows compared */
    int failures = 0;
    int mrc = us_manifest_read(dir, &m, &err);
    if (mrc == US_OK && expect_shards > 0 && m.shard_count != (uint32_t)expect_shards) {
        mrc = us_err_set(&err, US_EINVAL, "store '%s' has %u shards, expected %ld (shard "
                         "count mismatch)", dir, m.shard_count, expect_shards);
        us_manifest_free(&m);
    }
    if (mrc != US_OK) {
        if (w.rank == 0)
            fprintf(stderr, "ultrashard verify: error: %s (%s)\n", err.msg,
                    us_code_name(err.code));
        failures++;
        m.shard_count = 0;
    }
    for (uint32_t s = (uint32_t)w.rank; s < m.shard_count; s += (uint32_t)w.size) {
        /* open unchecked: us_store_verify checks and counts every block */
        us_store_opts so = { .backend = US_BACKEND_MMAP, .shard_index = (int)s,
                             .expect_shards = (int)expect_shards,
                             .check = US_STORE_CHECK_FIRST_USE };
        us_store *st;
        if (us_store_open(dir, &so, &st, &err) != US_OK) {
            fprintf(stderr, "verify: shard %u: %s\n", s, err.msg);
            failures++;
            continue;
        }
        us_verify_report rep;
        if (us_store_verify(st, true, &rep, &err) != US_OK)
            failures++;
        for (size_t i = 0; i < m.n_tables; i++)
            local[0] += !m.tables[i].synthetic;
        local[1] += rep.blocks_checked;
        local[2] += rep.blocks_bad;
        local[3] += rep.bytes_checked;
        for (size_t a = 0; a < n_against && rep.blocks_bad == 0; a++) {
            size_t ti;
            uint64_t rows = 0;
            int rc = us_store_find_table(st, against[a].name, &ti, &err);
            if (rc == US_OK)
                rc = us_import_compare(st, ti, against[a].path, against[a].tensor, &rows, &err);
            if (rc != US_OK) {
                fprintf(stderr, "verify: shard %u: %s\n", s, err.msg);
                failures++;
            }
            local[4] += rows;
        }
        us_store_close(st);
    }
    if (m.shard_count > 0)
        us_manifest_free(&m);
    uint64_t total[5];
    int all_failures = 0;
    double secs = MPI_Wtime() - t0, max_secs = secs;
    MPI_Allreduce(local, total, 5, MPI_UINT64_T, MPI_SUM, w.comm);
    MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, w.comm);
    MPI_Allreduce(&secs, &max_secs, 1, MPI_DOUBLE, MPI_MAX, w.comm);
    if (w.rank == 0) {
        printf("verify %s: %s: %llu files, %llu blocks, %.1f MB checked, %llu bad blocks, "
               "%d failures, %llu rows compared, %d ranks, %.2f s\n", dir,
               all_failures ? "FAILED" : "ok", (unsigned long long)total[0],
               (unsigned long long)total[1], total[3] / 1e6, (unsigned long long)total[2],
               all_failures, (unsigned long long)total[4], w.size, max_secs);
        printf("{\"event\":\"verify\",\"ok\":%s,\"blocks\":%llu,\"bad_blocks\":%llu,"
               "\"bytes\":%llu,\"rows_compared\":%llu,\"ranks\":%d,\"seconds\":%.6f}\n",
               all_failures ? "false" : "true", (unsigned long long)total[1],
               (unsigned long long)total[2], (unsigned long long)total[3],
               (unsigned long long)total[4], w.size, max_secs);
    }
    us_world_finalize(&w);
    return all_failures ? 1 : 0;
}

int us_cmd_reshard(int argc, char **argv)
{
    const us_command *cmd = us_command_find("reshard");
    us_err err = {0};
    long shards = 0;
    const char *pos[2] = { NULL, NULL };
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--shards") == 0 && i + 1 < argc) {
            if (us_cli_parse_long("--shards", argv[++i], 1, US_MAX_SHARDS, &shards, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
        } else if (argv[i][0] == '-') {
            return us_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (n_pos < 2) {
            pos[n_pos++] = argv[i];
        } else {
            return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (shards == 0 || n_pos != 2)
        return us_cli_usage_error(cmd, "need --shards S2, SRC and DST");
    us_reshard_stats st;
    if (us_reshard(pos[0], pos[1], (uint32_t)shards, &st, &err) != US_OK)
        return us_cli_fail("reshard", &err);
    double frac = st.blocks_total ? (double)st.blocks_moved / st.blocks_total : 0;
    printf("reshard %s (%u shards) -> %s (%u shards): moved %llu of %llu blocks (%.4f); "
           "proof: %llu rows compared, %llu differ, digest %016llx == %016llx; %.1f MB in %.2f s\n",
           pos[0], st.old_shards, pos[1], st.new_shards, (unsigned long long)st.blocks_moved,
           (unsigned long long)st.blocks_total, frac, (unsigned long long)st.rows_checked,
           (unsigned long long)st.rows_differ, (unsigned long long)st.old_digest,
           (unsigned long long)st.new_digest, st.bytes_written / 1e6, st.seconds);
    printf("{\"event\":\"reshard\",\"old_shards\":%u,\"new_shards\":%u,\"blocks\":%llu,"
           "\"moved\":%llu,\"rows_checked\":%llu,\"rows_differ\":%llu,\"seconds\":%.6f}\n",
           st.old_shards, st.new_shards, (unsigned long long)st.blocks_total,
           (unsigned long long)st.blocks_moved, (unsigned long long)st.rows_checked,
           (unsigned long long)st.rows_differ, st.seconds);
    return 0;
}
