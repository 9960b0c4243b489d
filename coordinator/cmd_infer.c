/* cmd_infer.c — `ultrashard infer`: options, model + tables, journal, run. */
#include "coordinator/cmd_infer.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/cli.h"
#include "coordinator/infer.h"
#include "coordinator/journal.h"
#include "coordinator/model_io.h"
#include "coordinator/model_store.h"
#include "coordinator/prompts.h"

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

int us_cmd_infer(int argc, char **argv)
{
    const us_command *cmd = us_command_find("infer");
    const char *model_dir = NULL, *input = NULL, *output = NULL, *store_dir = NULL;
    us_infer_opts o = { .batch_size = 16, .batch_tokens = 256,
                        .sampling = { .temperature = 0.0f, .top_p = 1.0f }, .progress = true };
    long max_tokens = 64, max_prompt = 1 << 20;
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

    int status = 1;
    us_prompt_set set = {0};
    us_model m = {0};
    us_value_tables vt = {0};
    us_model_store ms = {0};
    us_memory_backend be;
    us_journal j = {0};
    us_infer_stats st;
    uint64_t fp = 0;
    if (us_prompts_load(&set, input, (uint32_t)max_tokens, (size_t)max_prompt, &err) != US_OK)
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
    if (store_dir != NULL) {
        if (us_model_store_open(&ms, store_dir, &m.cfg, &err) != US_OK)
            goto fail_model;
        us_model_store_backend(&ms, &be);
    } else {
        if (us_value_tables_load(&vt, model_dir, &m.cfg, &err) != US_OK)
            goto fail_model;
        us_value_tables_backend(&vt, &be);
    }
    if (us_model_set_backend(&m, &be, &err) != US_OK ||
        fingerprint(&fp, model_dir, store_dir, &set, &m, &o, (uint32_t)max_tokens, &err) != US_OK ||
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
    return status == 0 ? 0 : us_cli_fail("infer", &err);
}
