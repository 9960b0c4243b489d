/*
 * cmd_store.c — `ultrashard import | inspect | verify | reshard`: option
 * parsing and reporting only; the work is in shard/ (import.h, store.h,
 * reshard.h). import and verify run under mpirun (or as one rank).
 */
#include "coordinator/cli/cmd_store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "proto/world.h"
#include "shard/durable.h"
#include "shard/import.h"
#include "shard/reshard.h"
#include "shard/store.h"
#include "shard/store_check.h"

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

/* Fault hook of tests/integration/store_resume.sh: die like a crash once
 * this rank has written the N-th shard file. */
static void kill_after_files(void *ctx, int files_written)
{
    if (files_written == *(const int *)ctx)
        raise(SIGKILL);
}

/* Process-wide choices the import library leaves to its caller: a file size
 * limit (a full disk in tests) is an error, not a kill; and the test fault
 * hook US_FAULT_KILL_AFTER_FILES=N, read here and nowhere in the library. */
static void import_process_setup(us_import_opts *o)
{
    static int kill_after;
    us_durable_ignore_sigxfsz();
    const char *v = getenv("US_FAULT_KILL_AFTER_FILES");
    if (v != NULL && (kill_after = atoi(v)) > 0) {
        o->after_file_written = kill_after_files;
        o->after_file_ctx = &kill_after;
    }
}

/* The options of `import`; -1 when they are good, else the exit status
 * (0 after --help, the usage error's otherwise). */
typedef struct import_args {
    us_import_opts o;
    us_import_table tables[256];
    size_t n;
    long shards;              /* 0 = one per rank */
} import_args;

/* --seed / --synthetic-seed: an unsigned integer (any base strtoull reads). */
static int parse_seed(const us_command *cmd, int ch, const char *arg, uint64_t *out)
{
    char *end;
    unsigned long long s = strtoull(arg, &end, 0);
    if (*arg == '\0' || *end != '\0' || *arg == '-')
        return us_cli_usage_error(cmd, "%s: '%s' is not an unsigned integer",
                                  ch == 'e' ? "--seed" : "--synthetic-seed", arg);
    *out = s;
    return -1;
}

/* One option of `import`; returns -1 to go on, else the exit status. */
static int import_option(const us_command *cmd, int ch, import_args *a)
{
    us_err err = {0};
    long v;
    switch (ch) {
    case 'o': a->o.out_dir = optarg; return -1;
    case 't':
    case 'y':
        if (a->n == sizeof a->tables / sizeof a->tables[0])
            return us_cli_usage_error(cmd, "at most %zu tables", a->n);
        if ((ch == 't' ? parse_table_arg(optarg, &a->tables[a->n], &err)
                       : parse_synthetic_arg(optarg, &a->tables[a->n], &err)) != US_OK)
            return us_cli_usage_error(cmd, "%s", err.msg);
        a->n++;
        return -1;
    case 'd':
        if (strcmp(optarg, "keep") == 0)
            a->o.keep_dtype = true;
        else if (us_dtype_parse(optarg, &a->o.dtype) == 0)
            a->o.keep_dtype = false;
        else
            return us_cli_usage_error(cmd, "--dtype: unknown dtype '%s'", optarg);
        return -1;
    case 's':
        if (us_cli_parse_long("--shards", optarg, 1, US_MAX_SHARDS, &a->shards, &err))
            return us_cli_usage_error(cmd, "%s", err.msg);
        return -1;
    case 'b':
        if (us_cli_parse_long("--block-bits", optarg, 0, US_MAX_BLOCK_BITS, &v, &err))
            return us_cli_usage_error(cmd, "%s", err.msg);
        a->o.block_bits = (uint32_t)v;
        return -1;
    case 'e': return parse_seed(cmd, ch, optarg, &a->o.placement_seed);
    case 'x': return parse_seed(cmd, ch, optarg, &a->o.synthetic_seed);
    case 'q': a->o.progress = false; return -1;
    case 'h': fputs(cmd->usage, stdout); return 0;
    default:  return us_cli_usage_error(cmd, "unknown option");
    }
}

static int import_options(const us_command *cmd, int argc, char **argv, import_args *a)
{
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
    int ch, status;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1)
        if ((status = import_option(cmd, ch, a)) >= 0)
            return status;
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->o.out_dir == NULL)
        return us_cli_usage_error(cmd, "--out DIR is required");
    if (a->n == 0)
        return us_cli_usage_error(cmd, "give at least one --table or --synthetic");
    return -1;
}

static void print_import(const import_args *a, const us_import_stats *st, int ranks)
{
    printf("import: %zu tables, %u shards, %d ranks: %llu blocks, %.1f MB read, "
           "%.1f MB written in %.2f s -> %s\n", a->n, a->o.shards, ranks,
           (unsigned long long)st->blocks, st->bytes_read / 1e6, st->bytes_written / 1e6,
           st->seconds, a->o.out_dir);
    if (st->resumed_files > 0)
        printf("import: resumed after a crash: kept %llu shard files already written\n",
               (unsigned long long)st->resumed_files);
    printf("{\"event\":\"import\",\"tables\":%zu,\"shards\":%u,\"ranks\":%d,\"blocks\":%llu,"
           "\"bytes_read\":%llu,\"bytes_written\":%llu,\"seconds\":%.6f}\n", a->n, a->o.shards,
           ranks, (unsigned long long)st->blocks, (unsigned long long)st->bytes_read,
           (unsigned long long)st->bytes_written, st->seconds);
}

int us_cmd_import(int argc, char **argv)
{
    const us_command *cmd = us_command_find("import");
    us_err err = {0};
    import_args a = { .o = { .block_bits = 12, .keep_dtype = true, .progress = true } };
    int status = import_options(cmd, argc, argv, &a);
    if (status >= 0)
        return status;
    us_world w;
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&w, &argc, &argv, &wo, &err) != US_OK)
        return us_cli_fail("import", &err);
    a.o.shards = a.shards > 0 ? (uint32_t)a.shards : (uint32_t)w.size;
    import_process_setup(&a.o);
    us_import_stats st = {0};
    status = 0;
    if (us_import(w.comm, &a.o, a.tables, a.n, &st, &err) != US_OK) {
        fprintf(stderr, "ultrashard import: rank %d: error: %s (%s)\n", w.rank, err.msg,
                us_code_name(err.code));
        status = 1;
    } else if (w.rank == 0) {
        print_import(&a, &st, w.size);
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

/* `inspect`'s report of the manifest m and its summary s, as text or JSON lines. */
static void print_inspect(const char *dir, const us_manifest *m, const us_store_summary *s,
                          bool json)
{
    if (!json)
        print_identity(dir, m);
    for (size_t i = 0; i < m->n_tables; i++) {
        const us_table_layout *t = &m->tables[i];
        if (json)
            printf("{\"table\":\"%s\",\"id\":%u,\"rows\":%llu,\"dim\":%u,\"dtype\":\"%s\","
                   "\"block_rows\":%llu,\"blocks\":%llu,\"synthetic\":%s,\"bytes\":%llu}\n",
                   t->name, t->table_id, (unsigned long long)t->rows, t->dim,
                   us_dtype_name(t->dtype), (unsigned long long)t->rows_per_block,
                   (unsigned long long)t->n_blocks, t->synthetic ? "true" : "false",
                   (unsigned long long)s->table_bytes[i]);
        else
            printf("  table %u '%s': %llu rows x %u %s, %llu blocks of %llu rows%s, %.1f MB\n",
                   t->table_id, t->name, (unsigned long long)t->rows, t->dim,
                   us_dtype_name(t->dtype), (unsigned long long)t->n_blocks,
                   (unsigned long long)t->rows_per_block,
                   t->synthetic ? " (synthetic: no storage)" : "", s->table_bytes[i] / 1e6);
    }
    for (uint32_t sh = 0; sh < m->shard_count && !json; sh++)
        printf("  shard %u: %llu blocks, %.1f MB\n", sh, (unsigned long long)s->shard_blocks[sh],
               s->shard_bytes[sh] / 1e6);
    if (json)
        printf("{\"store\":\"%s\",\"shards\":%u,\"tables\":%zu,\"blocks\":%llu,\"bytes\":%llu,"
               "\"balance_max_over_mean\":%.4f}\n", dir, m->shard_count, m->n_tables,
               (unsigned long long)s->total_blocks, (unsigned long long)s->total_bytes,
               s->balance);
    else
        printf("  total %llu blocks, %.1f MB; balance max/mean blocks per shard %.3f\n",
               (unsigned long long)s->total_blocks, s->total_bytes / 1e6, s->balance);
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
    us_store_summary s;
    if (us_manifest_read(dir, &m, &err) != US_OK)
        return us_cli_fail("inspect", &err);
    if (us_store_summarize(&m, &s, &err) != US_OK) {
        us_manifest_free(&m);
        return us_cli_fail("inspect", &err);
    }
    print_inspect(dir, &m, &s, json);
    us_store_summary_free(&s);
    us_manifest_free(&m);
    return 0;
}

/* The options of `verify`; -1 when they are good, else the exit status. */
static int verify_options(const us_command *cmd, int argc, char **argv, const char **dir,
                          us_store_check_opts *o, us_import_table *against, size_t cap)
{
    us_err err = {0};
    long expect_shards = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(cmd->usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--expect-shards") == 0 && i + 1 < argc) {
            if (us_cli_parse_long("--expect-shards", argv[++i], 1, US_MAX_SHARDS,
                                  &expect_shards, &err))
                return us_cli_usage_error(cmd, "%s", err.msg);
            o->expect_shards = (uint32_t)expect_shards;
        } else if (strcmp(argv[i], "--against") == 0 && i + 1 < argc) {
            if (o->n_against == cap)
                return us_cli_usage_error(cmd, "at most %zu --against", cap);
            if (parse_table_arg(argv[++i], &against[o->n_against++], &err) != US_OK)
                return us_cli_usage_error(cmd, "%s", err.msg);
        } else if (argv[i][0] == '-') {
            return us_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
        } else if (*dir == NULL) {
            *dir = argv[i];
        } else {
            return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (*dir == NULL)
        return us_cli_usage_error(cmd, "no store directory given");
    return -1;
}

static void print_verify(const char *dir, const us_store_check_report *r, int ranks)
{
    printf("verify %s: %s: %llu files, %llu blocks, %.1f MB checked, %llu bad blocks, "
           "%d failures, %llu rows compared, %d ranks, %.2f s\n", dir,
           r->failures ? "FAILED" : "ok", (unsigned long long)r->files,
           (unsigned long long)r->blocks, r->bytes / 1e6, (unsigned long long)r->bad_blocks,
           r->failures, (unsigned long long)r->rows_compared, ranks, r->seconds);
    printf("{\"event\":\"verify\",\"ok\":%s,\"blocks\":%llu,\"bad_blocks\":%llu,"
           "\"bytes\":%llu,\"rows_compared\":%llu,\"ranks\":%d,\"seconds\":%.6f}\n",
           r->failures ? "false" : "true", (unsigned long long)r->blocks,
           (unsigned long long)r->bad_blocks, (unsigned long long)r->bytes,
           (unsigned long long)r->rows_compared, ranks, r->seconds);
}

int us_cmd_verify(int argc, char **argv)
{
    const us_command *cmd = us_command_find("verify");
    const char *dir = NULL;
    us_import_table against[64];
    us_store_check_opts o = { .against = against, .log = stderr };
    int status = verify_options(cmd, argc, argv, &dir, &o, against, 64);
    if (status >= 0)
        return status;
    o.dir = dir;
    us_err err = {0};
    us_world w;
    us_world_opts wo = { .all_roles = true };
    if (us_world_init(&w, &argc, &argv, &wo, &err) != US_OK)
        return us_cli_fail("verify", &err);
    us_store_check_report rep;
    us_store_check(w.comm, &o, &rep, &err);   /* failures are in rep */
    /* the manifest's error is the same on every rank: print it once */
    if (rep.manifest_failed && w.rank == 0)
        fprintf(stderr, "ultrashard verify: error: %s (%s)\n", err.msg, us_code_name(err.code));
    if (w.rank == 0)
        print_verify(dir, &rep, w.size);
    us_world_finalize(&w);
    return rep.failures ? 1 : 0;
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
