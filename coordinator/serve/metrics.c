/* metrics.c — Prometheus text exposition of the service's counters (metrics.h). */
#include "coordinator/serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/client_frame.h"

static const double lat_bounds[US_METRICS_LAT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30 };
static const double size_bounds[US_METRICS_SIZE_BUCKETS] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096 };

/* Body cases in metric order: index 0 is "none". */
static const int kind_cases[US_METRICS_KINDS] = {
    ULTRASHARD__REQUEST__BODY__NOT_SET, ULTRASHARD__REQUEST__BODY_AUTH,
    ULTRASHARD__REQUEST__BODY_LOOKUP, ULTRASHARD__REQUEST__BODY_MEMORY,
    ULTRASHARD__REQUEST__BODY_GENERATE, ULTRASHARD__REQUEST__BODY_STATS,
    ULTRASHARD__REQUEST__BODY_HEALTH };

int us_metrics_kind_index(int body_case)
{
    for (int i = 1; i < US_METRICS_KINDS; i++)
        if (kind_cases[i] == body_case)
            return i;
    return 0;
}

void us_histogram_observe(us_histogram *h, double v, int size_buckets)
{
    const double *b = size_buckets ? size_bounds : lat_bounds;
    int n = size_buckets ? US_METRICS_SIZE_BUCKETS : US_METRICS_LAT_BUCKETS, i = 0;
    while (i < n && v > b[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

typedef struct text {
    char *buf;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !t->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = 2 * t->cap + (size_t)(n > 0 ? n : 0) + 1;
        char *b = realloc(t->buf, cap);
        if (b == NULL) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

/* One histogram's series; labels is "" or `kind="lookup",` (trailing comma). */
static void put_hist(text *t, const char *name, const char *labels, const us_histogram *h,
                     int size_buckets)
{
    const double *b = size_buckets ? size_bounds : lat_bounds;
    int n = size_buckets ? US_METRICS_SIZE_BUCKETS : US_METRICS_LAT_BUCKETS;
    uint64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->counts[i];
        put(t, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, b[i], (unsigned long long)cum);
    }
    cum += h->counts[n];
    put(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    int ll = (int)strlen(labels);   /* drop the trailing comma; no braces without labels */
    put(t, "%s_sum%s%.*s%s %.9g\n", name, ll ? "{" : "", ll ? ll - 1 : 0, labels,
        ll ? "}" : "", h->sum);
    put(t, "%s_count%s%.*s%s %llu\n", name, ll ? "{" : "", ll ? ll - 1 : 0, labels,
        ll ? "}" : "", (unsigned long long)h->count);
}

static void put_counter(text *t, const char *name, const char *help, const char *type,
                        unsigned long long v)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

static void render_requests(text *t, const us_serve_metrics *m)
{
    put(t, "# HELP ultrashard_requests_total Requests accepted, by kind.\n"
           "# TYPE ultrashard_requests_total counter\n");
    for (int i = 1; i < US_METRICS_KINDS; i++)
        put(t, "ultrashard_requests_total{kind=\"%s\"} %llu\n",
            us_request_kind_name(kind_cases[i]), (unsigned long long)m->requests[i]);
    put(t, "# HELP ultrashard_responses_total Final answers, by status code.\n"
           "# TYPE ultrashard_responses_total counter\n");
    for (int s = 0; s < US_METRICS_STATUSES; s++)
        put(t, "ultrashard_responses_total{code=\"%s\"} %llu\n", us_status_name(s),
            (unsigned long long)m->responses[s]);
    put(t, "# HELP ultrashard_request_seconds Accept to final answer, by kind.\n"
           "# TYPE ultrashard_request_seconds histogram\n");
    for (int i = 1; i < US_METRICS_KINDS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "kind=\"%s\",", us_request_kind_name(kind_cases[i]));
        put_hist(t, "ultrashard_request_seconds", labels, &m->request_s[i], 0);
    }
}

int us_serve_metrics_render(const us_serve_metrics *m, char **out, size_t *len)
{
    text t = { 0 };
    render_requests(&t, m);
    put(&t, "# HELP ultrashard_lookup_round_seconds One coalesced lookup round.\n"
            "# TYPE ultrashard_lookup_round_seconds histogram\n");
    put_hist(&t, "ultrashard_lookup_round_seconds", "", &m->lookup_round_s, 0);
    put(&t, "# HELP ultrashard_batch_tokens Tokens per lookup round or decode step.\n"
            "# TYPE ultrashard_batch_tokens histogram\n");
    put_hist(&t, "ultrashard_batch_tokens", "", &m->batch_tokens, 1);
    put_counter(&t, "ultrashard_queue_depth", "Requests waiting for a cycle.", "gauge",
                m->queue_depth);
    put_counter(&t, "ultrashard_generates_active", "Generate requests being decoded.", "gauge",
                m->generates_active);
    put_counter(&t, "ultrashard_connections", "Client connections open.", "gauge",
                m->connections_open);
    put_counter(&t, "ultrashard_connections_total", "Client connections accepted.", "counter",
                m->connections_total);
    put_counter(&t, "ultrashard_connections_refused_total",
                "Connections refused (limit, draining).", "counter", m->connections_refused);
    put_counter(&t, "ultrashard_frames_bad_total", "Malformed, oversized or slow frames.",
                "counter", m->frames_bad);
    put_counter(&t, "ultrashard_cycles_total", "Work cycles run.", "counter", m->cycles);
    put_counter(&t, "ultrashard_decode_steps_total", "Decode steps.", "counter",
                m->decode_steps);
    put_counter(&t, "ultrashard_lookup_rounds_total", "Coalesced lookup rounds.", "counter",
                m->lookup_rounds);
    put_counter(&t, "ultrashard_generated_tokens_total", "Tokens generated.", "counter",
                m->generated_tokens);
    put(&t, "# HELP ultrashard_table_bytes_total Lookup payload bytes this coordinator "
            "exchanged with the shards, by table and direction.\n"
            "# TYPE ultrashard_table_bytes_total counter\n");
    for (uint32_t i = 0; i < m->n_tables && i < US_METRICS_MAX_TABLES; i++)
        put(&t, "ultrashard_table_bytes_total{table=\"table_%u\",dir=\"sent\"} %llu\n"
                "ultrashard_table_bytes_total{table=\"table_%u\",dir=\"recv\"} %llu\n", i,
            (unsigned long long)m->table_bytes_sent[i], i,
            (unsigned long long)m->table_bytes_recv[i]);
    if (t.failed) {
        free(t.buf);
        *out = NULL;
        return -1;
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}
