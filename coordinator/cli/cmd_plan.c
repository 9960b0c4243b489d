/* cmd_plan.c — `ultrashard plan`: parse node and table specs, print the plan. */
#include "coordinator/cli/cmd_plan.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "coordinator/plan/plan.h"

/* "256G", "1.5T", "4096": binary suffixes K/M/G/T (optionally followed by
 * "iB" or "B"); the result must lie in [min, max]. */
static int parse_bytes(const char *option, const char *text, double min, double max,
                       double *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || v != v)
        return us_err_set(err, US_EINVAL, "%s: '%s' is not a size", option, text);
    double mult = 1;
    if (*end != '\0') {
        const char *units = "KMGT";
        const char *u = strchr(units, *end >= 'a' ? *end - 32 : *end);
        if (u == NULL)
            return us_err_set(err, US_EINVAL, "%s: '%s': unknown suffix (K, M, G, T)", option, text);
        mult = pow(1024.0, (double)(u - units + 1));
        end++;
        if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
            return us_err_set(err, US_EINVAL, "%s: '%s': unknown suffix", option, text);
    }
    v *= mult;
    if (v < min || v > max)
        return us_err_set(err, US_EINVAL, "%s: %g bytes is outside [%g, %g]", option, v, min, max);
    *out = v;
    return US_OK;
}

enum {
    OPT_VALUES = 256, OPT_DIM, OPT_DTYPE, OPT_LAYERS, OPT_HEADS, OPT_K, OPT_GROUPS,
    OPT_BATCH, OPT_TARGET, OPT_NODE_MEM, OPT_NIC_GBIT, OPT_NIC_LAT, OPT_CORES,
    OPT_RPN, OPT_HEADROOM, OPT_UTIL, OPT_MSG_US, OPT_ROW_NS, OPT_GATHER_GBS,
    OPT_UNIQUE, OPT_BLOCK_BITS, OPT_SHARDS, OPT_JSON,
};

static int parse_option(int ch, const char *arg, us_plan_input *in, us_err *err)
{
    long l;
    double d;
    int rc = US_OK;
#define LONG_OPT(name, lo, hi, field) \
    if ((rc = us_cli_parse_long(name, arg, lo, hi, &l, err)) == US_OK) field = (uint32_t)l
#define DBL_OPT(name, lo, hi, expr) \
    if ((rc = us_cli_parse_double(name, arg, lo, hi, &d, err)) == US_OK) expr
    switch (ch) {
    case OPT_VALUES:   DBL_OPT("--values", 1, 1e13, in->values = d); break;
    case OPT_DIM:      LONG_OPT("--dim", 1, 65536, in->dim); break;
    case OPT_DTYPE:
        if (us_dtype_parse(arg, &in->dtype) != 0)
            rc = us_err_set(err, US_EINVAL, "--dtype: '%s' is not f32, bf16, f16 or int8", arg);
        break;
    case OPT_LAYERS:   LONG_OPT("--layers", 1, 1024, in->layers); break;
    case OPT_HEADS:    LONG_OPT("--heads", 1, 1024, in->heads); break;
    case OPT_K:        LONG_OPT("--k", 1, 65536, in->k); break;
    case OPT_GROUPS:   LONG_OPT("--groups", 1, 256, in->groups); break;
    case OPT_BATCH:    LONG_OPT("--batch", 1, 1 << 24, in->batch_tokens); break;
    case OPT_TARGET:   DBL_OPT("--target-tokens-per-s", 1e-3, 1e12, in->target_tokens_per_s = d); break;
    case OPT_NODE_MEM: rc = parse_bytes("--node-memory", arg, 1 << 20, 1e18, &in->node_memory_bytes, err); break;
    case OPT_NIC_GBIT: DBL_OPT("--nic-gbit", 1e-3, 1e5, in->nic_bytes_per_s = d * 1e9 / 8); break;
    case OPT_NIC_LAT:  DBL_OPT("--nic-latency-us", 0, 1e6, in->nic_latency_s = d * 1e-6); break;
    case OPT_CORES:    LONG_OPT("--cores", 1, 65536, in->cores); break;
    case OPT_RPN:      LONG_OPT("--ranks-per-node", 1, 65536, in->ranks_per_node); break;
    case OPT_HEADROOM: DBL_OPT("--headroom", 0, 0.99, in->headroom = d); break;
    case OPT_UTIL:     DBL_OPT("--max-util", 0.01, 1, in->max_util = d); break;
    case OPT_MSG_US:   DBL_OPT("--msg-us", 0, 1e5, in->msg_overhead_s = d * 1e-6); break;
    case OPT_ROW_NS:   DBL_OPT("--row-ns", 0, 1e8, in->row_ns = d); break;
    case OPT_GATHER_GBS: DBL_OPT("--gather-gbs", 1e-3, 1e4, in->gather_bytes_per_s = d * 1e9); break;
    case OPT_UNIQUE:   DBL_OPT("--unique-fraction", 1e-6, 1, in->unique_fraction = d); break;
    case OPT_BLOCK_BITS: LONG_OPT("--block-bits", 0, 30, in->block_bits); break;
    case OPT_SHARDS:   LONG_OPT("--shards", 1, US_PLAN_MAX_SHARDS, in->shards); break;
    default: rc = us_err_set(err, US_EINVAL, "unknown option");
    }
#undef LONG_OPT
#undef DBL_OPT
    return rc;
}

/* 1536 -> "1.50 KiB" (binary units, 3 significant figures). */
static const char *fmt_bytes(char *buf, size_t n, double v)
{
    const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    int u = 0;
    while (v >= 1024 && u < 5) { v /= 1024; u++; }
    snprintf(buf, n, "%.3g %s", v, units[u]);
    return buf;
}

static const char *fmt_time(char *buf, size_t n, double s)
{
    if (s < 1e-3) snprintf(buf, n, "%.3g us", s * 1e6);
    else if (s < 1) snprintf(buf, n, "%.3g ms", s * 1e3);
    else snprintf(buf, n, "%.3g s", s);
    return buf;
}

static void print_json(const us_plan_input *in, const us_plan_result *r)
{
    printf("{\"bench\":\"plan\",\"placement\":\"%s\",\"mode\":\"%s\",\"limit\":\"%s\","
           "\"values\":%.6g,\"dim\":%u,\"dtype\":\"%s\",\"layers\":%u,\"heads\":%u,\"k\":%u,"
           "\"groups\":%u,\"batch\":%u,\"target_tokens_per_s\":%.6g,"
           "\"shards\":%u,\"nodes\":%u,\"shards_for_memory\":%u,\"shards_for_compute\":%u,"
           "\"shards_for_network\":%u,\"table_bytes\":%.6g,\"memory_per_rank_bytes\":%.6g,"
           "\"node_memory_used_bytes\":%.6g,\"pairs_per_token\":%.6g,"
           "\"shards_per_token_layer\":%.6g,\"request_bytes_per_token\":%.6g,"
           "\"response_bytes_per_token\":%.6g,\"net_bytes_per_token\":%.6g,"
           "\"messages_per_token\":%.6g,\"shard_net_bytes_per_token\":%.6g,"
           "\"t_msg_us\":%.6g,\"t_net_us\":%.6g,\"t_gather_us\":%.6g,\"t_merge_us\":%.6g,"
           "\"round_latency_us\":%.6g,\"token_latency_us\":%.6g,"
           "\"tokens_per_s_per_coordinator\":%.6g,\"coordinators\":%u}\n",
           us_plan_placement_name(r->placement), us_plan_mode_name(r->mode), r->limit,
           in->values, in->dim, us_dtype_name(in->dtype), in->layers, in->heads, in->k,
           in->groups, in->batch_tokens, in->target_tokens_per_s,
           r->shards, r->nodes, r->shards_for_memory, r->shards_for_compute,
           r->shards_for_network, r->table_bytes, r->memory_per_rank_bytes,
           r->node_memory_used_bytes, r->pairs_per_token, r->shards_per_token_layer,
           r->request_bytes_per_token, r->response_bytes_per_token, r->net_bytes_per_token,
           r->messages_per_token, r->shard_net_bytes_per_token,
           r->t_msg_s * 1e6, r->t_net_s * 1e6, r->t_gather_s * 1e6, r->t_merge_s * 1e6,
           r->round_latency_s * 1e6, r->token_latency_s * 1e6,
           r->tokens_per_s_per_coordinator, r->coordinators);
}

static void print_table(const us_plan_input *in, const us_plan_result r[4])
{
    char a[32], b[32], c[32], e[32];
    printf("table: %.3g values x %u %s = %s; %u layers x %u heads x k %u = %.0f pairs/token; "
           "batch %u; target %.3g tokens/s\n",
           in->values, in->dim, us_dtype_name(in->dtype), fmt_bytes(a, sizeof a, r[0].table_bytes),
           in->layers, in->heads, in->k, r[0].pairs_per_token, in->batch_tokens,
           in->target_tokens_per_s);
    printf("node: %s memory (%.0f%% headroom), %.3g Gbit/s, %s latency, %u cores, "
           "%u rank(s)/node\n\n",
           fmt_bytes(a, sizeof a, in->node_memory_bytes), in->headroom * 100,
           in->nic_bytes_per_s * 8 / 1e9, fmt_time(b, sizeof b, in->nic_latency_s),
           in->cores, in->ranks_per_node);
    printf("%-9s %-5s %8s %-20s %11s %12s %10s %11s %11s %7s\n", "placement", "mode",
           "shards", "(limit)", "mem/rank", "net B/token", "msgs/token", "round", "token",
           "coords");
    int best = -1;
    for (int i = 0; i < 4; i++) {
        const us_plan_result *x = &r[i];
        bool ok = strncmp(x->limit, "unreachable", 11) != 0;
        if (ok && (best < 0 || x->shards < r[best].shards ||
                   (x->shards == r[best].shards && x->token_latency_s < r[best].token_latency_s)))
            best = i;
        if (!ok) {
            printf("%-9s %-5s %8s %-20s (no shard count up to %d meets this limit)\n",
                   us_plan_placement_name(x->placement), us_plan_mode_name(x->mode), "-",
                   x->limit, US_PLAN_MAX_SHARDS);
            continue;
        }
        printf("%-9s %-5s %8u %-20s %11s %12.4g %10.3g %11s %11s %7u\n",
               us_plan_placement_name(x->placement), us_plan_mode_name(x->mode), x->shards,
               x->limit, fmt_bytes(a, sizeof a, x->memory_per_rank_bytes),
               x->net_bytes_per_token, x->messages_per_token,
               fmt_time(c, sizeof c, x->round_latency_s), fmt_time(e, sizeof e, x->token_latency_s),
               x->coordinators);
    }
    if (best >= 0)
        printf("\nfewest shards: %s placement, %s (then lowest latency)\n",
               us_plan_placement_name(r[best].placement), us_plan_mode_name(r[best].mode));
    else
        printf("\nno placement reaches the target: lower it, or add memory/cores/NIC per node\n");
}

int us_cmd_plan(int argc, char **argv)
{
    const us_command *cmd = us_command_find("plan");
    static const struct option long_opts[] = {
        { "values", required_argument, 0, OPT_VALUES },
        { "dim", required_argument, 0, OPT_DIM },
        { "dtype", required_argument, 0, OPT_DTYPE },
        { "layers", required_argument, 0, OPT_LAYERS },
        { "heads", required_argument, 0, OPT_HEADS },
        { "k", required_argument, 0, OPT_K },
        { "groups", required_argument, 0, OPT_GROUPS },
        { "batch", required_argument, 0, OPT_BATCH },
        { "target-tokens-per-s", required_argument, 0, OPT_TARGET },
        { "node-memory", required_argument, 0, OPT_NODE_MEM },
        { "nic-gbit", required_argument, 0, OPT_NIC_GBIT },
        { "nic-latency-us", required_argument, 0, OPT_NIC_LAT },
        { "cores", required_argument, 0, OPT_CORES },
        { "ranks-per-node", required_argument, 0, OPT_RPN },
        { "headroom", required_argument, 0, OPT_HEADROOM },
        { "max-util", required_argument, 0, OPT_UTIL },
        { "msg-us", required_argument, 0, OPT_MSG_US },
        { "row-ns", required_argument, 0, OPT_ROW_NS },
        { "gather-gbs", required_argument, 0, OPT_GATHER_GBS },
        { "unique-fraction", required_argument, 0, OPT_UNIQUE },
        { "block-bits", required_argument, 0, OPT_BLOCK_BITS },
        { "shards", required_argument, 0, OPT_SHARDS },
        { "json", no_argument, 0, OPT_JSON },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    us_plan_input in;
    us_plan_defaults(&in);
    us_err err = {0};
    bool json = false;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(cmd->usage, stdout);
            return 0;
        }
        if (ch == OPT_JSON) {
            json = true;
            continue;
        }
        if (ch == '?' || ch == ':')
            return us_cli_usage_error(cmd, "unknown option or missing value: '%s'",
                                      argv[optind - 1]);
        if (parse_option(ch, optarg, &in, &err) != US_OK)
            return us_cli_usage_error(cmd, "%s", err.msg);
    }
    if (optind != argc)
        return us_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (us_plan_validate(&in, &err) != US_OK)
        return us_cli_usage_error(cmd, "%s", err.msg);

    us_plan_result r[4];
    for (int i = 0; i < 4; i++) {
        us_plan_placement pl = i < 2 ? US_PLAN_ROW : US_PLAN_COLUMN;
        us_plan_mode mode = (i % 2) == 0 ? US_PLAN_PUSH : US_PLAN_PULL;
        if (us_plan_compute(&in, pl, mode, &r[i], &err) != US_OK)
            return us_cli_fail("plan", &err);
    }
    if (json)
        for (int i = 0; i < 4; i++)
            print_json(&in, &r[i]);
    else
        print_table(&in, r);
    return 0;
}
