/* cmd_infer.c — `ultrashard infer`: options, model + tables, journal, run. */
#include "coordinator/cli/cmd_infer.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/cli/cli.h"
#include "coordinator/infer/infer.h"
#include "coordinator/infer/journal.h"
#include "coordinator/model/memory_dist.h"
#include "coordinator/model/model_io.h"
#include "coordinator/model/model_store.h"
#include "coordinator/infer/prompts.h"

/* What "the same command" means for the journal: input bytes, model files,
 * decoding options. Weights are identified by size and mtime (hashing a
 * large weights file at every start would cost more than it protects). */
static int fingerprint(uint64_t *out, const char *model_dir, const char *store_dir,
                       const us_prompt_set *set,
                       const us_model *m, const us_infer_opts *o, uint32_t default_max_tokens,
                       us_err *err)
{
    char path[4096], opts[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/weights.safetensors", model_dir);
    if (stat(path, &st) != 0)
        return us_err_set(err, US_EIO, "%s: stat failed", path);
    char *cfg = us_model_config_to_json(&m->cfg);
    if (cfg == NULL)
        return us_err_set(err, US_ENOMEM, "fingerprint: out of memory");
    uint64_t h = us_fnv1a64(US_FNV1A64_INIT, &set->file_hash, sizeof set->file_hash);
    h = us_fnv1a64(h, cfg, strlen(cfg));
    free(cfg);
    int64_t w[3] = { (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec };
    h = us_fnv1a64(h, w, sizeof w);
    int n = snprintf(opts, sizeof opts, "t=%.9g p=%.9g seed=%" PRIu64 " max=%u",
                     (double)o->sampling.temperature, (double)o->sampling.top_p, o->seed,
                     default_max_tokens);
    h = us_fnv1a64(h, opts, (size_t)n);
    if (o->sessions_dir != NULL)
        h = us_fnv1a64(h, o->sessions_dir, strlen(o->sessions_dir) + 1);
    if (store_dir != NULL)
        h = us_fnv1a64(h, store_dir, strlen(store_dir) + 1);
    *out = h;
    return US_OK;
}

static int run_coordinator(const char *model_dir, const char *store_dir, const char *input,
                           const char *output, uint32_t max_tokens, size_t max_prompt,
                           us_infer_opts *op, us_memory_dist *dist, us_err *errp);

/* Collective: every rank reads the model config (for the table count and
 * lookup sizes) and opens its part of the store. */
static int open_distributed(const us_world *w, us_memory_dist *dist, const char *model_dir,
                            const char *store_dir, const char *transport,
                            us_lookup_mode mode, const us_infer_opts *o, us_err *err)
{
    if (store_dir == NULL)
        return us_err_set(err, US_EINVAL, "running under mpirun with %d ranks needs --store "
                          "(the shard ranks serve its memory tables)", w->size);
    char path[4096];
    us_model_config cfg;
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    int rc = us_model_config_load(&cfg, path, err);
    if (rc != US_OK)
        return rc;
    us_memory_dist_opts dopts = {
        .transport = transport, .mode = mode, .max_tokens = (uint32_t)o->batch_tokens,
        .k = cfg.memory.heads * cfg.memory.knn, .n_groups = cfg.memory.ive_groups,
        .n_threads = 1, .sessions_dir = o->sessions_dir };
    return us_memory_dist_open(dist, w, store_dir, us_model_config_memory_layers(&cfg),
                               &dopts, err);
}

int us_cmd_infer(int argc, char **argv)
{
    const us_command *cmd = us_command_find("infer");
    const char *model_dir = NULL, *input = NULL, *output = NULL, *store_dir = NULL;
    us_infer_opts o = { .batch_size = 16, .batch_tokens = 256,
                        .sampling = { .temperature = 0.0f, .top_p = 1.0f }, .progress = true };
    long max_tokens = 64, max_prompt = 1 << 20;
    const char *transport = "mpi";
    us_lookup_mode lookup_mode = US_LOOKUP_AUTO;
    us_err err = {0};
    static const struct option long_opts[] = {
        { "model", required_argument, 0, 'm' },
        { "input", required_argument, 0, 'i' },
        { "output", required_argument, 0, 'o' },
        { "batch", required_argument, 0, 'b' },
        { "batch-tokens", required_argument, 0, 'B' },
        { "max-tokens", required_argument, 0, 'n' },
        { "temperature", required_argument, 0, 't' },
        { "top-p", required_argument, 0, 'p' },
        { "seed", required_argument, 0, 's' },
        { "max-prompt-bytes", required_argument, 0, 'P' },
        { "step-delay-ms", required_argument, 0, 'd' },
        { "sessions", required_argument, 0, 'S' },
        { "store", required_argument, 0, 'T' },
        { "transport", required_argument, 0, 'R' },
        { "lookup-mode", required_argument, 0, 'L' },
        { "quiet", no_argument, 0, 'q' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        long v;
        double x;
        int rc = US_OK;
        switch (ch) {
        case 'm': model_dir = optarg; break;
        case 'i': input = optarg; break;
        case 'o': output = optarg; break;
        case 'b':
            rc = us_cli_parse_long("--batch", optarg, 1, 4096, &v, &err);
            o.batch_size = (size_t)v;
            break;
        case 'B':
            rc = us_cli_parse_long("--batch-tokens", optarg, 1, 1 << 20, &v, &err);
            o.batch_tokens = (size_t)v;
            break;
        case 'n':
            rc = us_cli_parse_long("--max-tokens", optarg, 0, US_PROMPT_MAX_TOKENS, &max_tokens,
                                   &err);
            break;
        case 't':
            rc = us_cli_parse_double("--temperature", optarg, 0.0, 100.0, &x, &err);
            o.sampling.temperature = (float)x;
            break;
        case 'p':
            rc = us_cli_parse_double("--top-p", optarg, 1e-6, 1.0, &x, &err);
            o.sampling.top_p = (float)x;
            break;
        case 's':
            rc = us_cli_parse_long("--seed", optarg, 0, 0x7fffffffffffffffL, &v, &err);
            o.seed = (uint64_t)v;
            break;
        case 'P':
            rc = us_cli_parse_long("--max-prompt-bytes", optarg, 0, 1L << 30, &max_prompt, &err);
            break;
        case 'd':
            rc = us_cli_parse_long("--step-delay-ms", optarg, 0, 60000, &v, &err);
            o.step_delay_ms = (uint32_t)v;
            break;
        case 'S': o.sessions_dir = optarg; break;
        case 'T': store_dir = optarg; break;
        case 'R':
            if (strcmp(optarg, "mpi") != 0 && strcmp(optarg, "fabric") != 0)
                return us_cli_usage_error(cmd, "--transport: '%s' is not mpi or fabric", optarg);
            transport = optarg;
            break;
        case 'L':
            if (strcmp(optarg, "auto") == 0)      lookup_mode = US_LOOKUP_AUTO;
            else if (strcmp(optarg, "push") == 0) lookup_mode = US_LOOKUP_PUSH;
            else if (strcmp(optarg, "pull") == 0) lookup_mode = US_LOOKUP_PULL;
            else return us_cli_usage_error(cmd, "--lookup-mode: '%s' is not auto, push or pull",
                                           optarg);
            break;
        case 'q': o.progress = false; break;
        case 'h': fputs(cmd->usage, stdout); return 0;
        default:  return us_cli_usage_error(cmd, "unknown option");
        }
        if (rc != US_OK)
            return us_cli_usage_error(cmd, "%s", err.msg);
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (model_dir == NULL || input == NULL || output == NULL)
        return us_cli_usage_error(cmd, "--model, --input and --output are required");
    if (o.batch_tokens < o.batch_size)
        return us_cli_usage_error(cmd, "--batch-tokens (%zu) must be >= --batch (%zu)",
                                  o.batch_tokens, o.batch_size);

    /* Under mpirun with several ranks the memory tables live on shard ranks:
     * every rank opens its part (collective), shard-only ranks serve until
     * the coordinator finishes, and only the coordinator decodes. */
    us_world w = {0};
    us_memory_dist dist = {0}, *distp = NULL;
    bool mpi_started = us_world_detect_mpirun();
    if (mpi_started) {
        if (us_world_init(&w, &argc, &argv, NULL, &err) != US_OK)
            return us_cli_fail("infer", &err);
        if (w.size > 1) {
            int rc = open_distributed(&w, &dist, model_dir, store_dir, transport, lookup_mode,
                                      &o, &err);
            if (rc != US_OK) {
                us_world_finalize(&w);
                return us_cli_fail("infer", &err);
            }
            distp = &dist;
            if (!w.is_coordinator) {
                rc = us_memory_dist_serve(&dist, &err);
                us_memory_dist_close(&dist);
                us_world_finalize(&w);
                return rc == US_OK ? 0 : us_cli_fail("infer", &err);
            }
        }
    }
    int status = run_coordinator(model_dir, store_dir, input, output, (uint32_t)max_tokens,
                                 (size_t)max_prompt, &o, distp, &err);
    if (distp != NULL) {
        us_err finish_err = {0};
        if (us_memory_dist_finish(distp, &finish_err) != US_OK) {
            /* shards may be stuck in a round: end the job rather than hang */
            us_world_abort(&w, &finish_err);
        }
        us_memory_dist_close(distp);
    }
    if (mpi_started)
        us_world_finalize(&w);
    return status == 0 ? 0 : us_cli_fail("infer", &err);
}

/* The coordinator's job: prompts, model, journal, decoding. Returns 0 or 1
 * with *err set. With dist, memory values come from the shard ranks. */
static int run_coordinator(const char *model_dir, const char *store_dir, const char *input,
                           const char *output, uint32_t max_tokens, size_t max_prompt,
                           us_infer_opts *op, us_memory_dist *dist, us_err *errp)
{
    us_infer_opts o = *op;
    us_err err = {0};
    us_session_store sessions;
    if (o.sessions_dir != NULL) {
        if (dist != NULL)
            us_memory_dist_session_store(dist, &sessions);
        else
            us_session_store_dir(&sessions, o.sessions_dir);
        o.sessions = &sessions;
    }
    int status = 1;
    us_prompt_set set = {0};
    us_model m = {0};
    us_value_tables vt = {0};
    us_model_store ms = {0};
    us_memory_backend be;
    us_journal j = {0};
    us_infer_stats st;
    uint64_t fp = 0;
    if (us_prompts_load(&set, input, max_tokens, max_prompt, &err) != US_OK)
        goto fail;
    for (size_t i = 0; i < set.count && o.sessions_dir == NULL; i++)
        if (set.items[i].session != NULL) {
            us_err_set(&err, US_EINVAL, "%s:%zu: line continues session \"%s\" but no "
                       "--sessions DIR was given", input, set.items[i].line,
                       set.items[i].session);
            goto fail;
        }
    if (us_model_load(&m, model_dir, &err) != US_OK)
        goto fail;
    if (dist != NULL) {
        us_memory_dist_backend(dist, &be);
    } else if (store_dir != NULL) {
        if (us_model_store_open(&ms, store_dir, &m.cfg, &err) != US_OK)
            goto fail_model;
        us_model_store_backend(&ms, &be);
    } else {
        if (us_value_tables_load(&vt, model_dir, &m.cfg, &err) != US_OK)
            goto fail_model;
        us_value_tables_backend(&vt, &be);
    }
    if (us_model_set_backend(&m, &be, &err) != US_OK ||
        fingerprint(&fp, model_dir, store_dir, &set, &m, &o, max_tokens, &err) != US_OK ||
        us_journal_open(&j, output, &set, fp, &err) != US_OK)
        goto fail_tables;
    o.job_fingerprint = fp;
    if (us_infer_run(&m, &set, &j, &o, &st, &err) != US_OK)
        goto fail_journal;
    printf("{\"event\":\"infer_done\",\"sequences\":%zu,\"resumed\":%zu,\"finished\":%zu,"
           "\"prompt_tokens\":%" PRIu64 ",\"generated_tokens\":%" PRIu64 ",\"steps\":%" PRIu64
           ",\"seconds\":%.3f,\"generated_tokens_per_s\":%.1f,\"state_bytes\":%zu,"
           "\"workspace_bytes\":%zu,\"params_bytes\":%" PRIu64 "}\n",
           st.sequences, st.resumed, st.finished, st.prompt_tokens, st.generated_tokens,
           st.steps, st.seconds, st.seconds > 0 ? st.generated_tokens / st.seconds : 0.0,
           st.state_bytes, st.workspace_bytes, m.n_params * 4);
    status = 0;
fail_journal:
    us_journal_close(&j);
fail_tables:
    us_value_tables_free(&vt);
    us_model_store_close(&ms);
fail_model:
    us_model_free(&m);
fail:
    us_prompts_free(&set);
    *errp = err;
    return status;
}
