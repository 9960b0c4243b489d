/*
 * metrics.h — the service's counters and their Prometheus text exposition
 * (format 0.0.4: `# HELP`, `# TYPE`, samples; histograms as cumulative
 * `_bucket{le=...}` series plus `_sum` and `_count`).
 *
 * The event loop (server.c) counts into one us_serve_metrics; a `GET
 * /metrics` on the --metrics address renders it. Nothing here does I/O or
 * allocates except us_serve_metrics_render's output buffer.
 */
#ifndef US_SERVE_METRICS_H
#define US_SERVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define US_METRICS_KINDS    7     /* request kinds: us_request_kind_name of body cases */
#define US_METRICS_STATUSES 11    /* Status values 0..10 */
#define US_METRICS_LAT_BUCKETS 14
#define US_METRICS_SIZE_BUCKETS 12
#define US_METRICS_MAX_TABLES 64

typedef struct us_histogram {
    uint64_t counts[US_METRICS_LAT_BUCKETS + 1];   /* per bucket (not cumulative); last = +Inf */
    double   sum;
    uint64_t count;
} us_histogram;

typedef struct us_serve_metrics {
    uint64_t requests[US_METRICS_KINDS];      /* by kind index (see metrics.c) */
    uint64_t responses[US_METRICS_STATUSES];  /* final answers by status */
    us_histogram request_s[US_METRICS_KINDS]; /* accept -> final answer, seconds */
    us_histogram lookup_round_s;              /* one coalesced lookup round */
    us_histogram batch_tokens;                /* tokens per lookup round / decode step */
    uint64_t connections_total, connections_refused, frames_bad;
    uint32_t connections_open, queue_depth, generates_active;
    uint64_t cycles, decode_steps, lookup_rounds, generated_tokens;
    uint32_t n_tables;
    uint64_t table_bytes_sent[US_METRICS_MAX_TABLES], table_bytes_recv[US_METRICS_MAX_TABLES];
    int      coordinator;
} us_serve_metrics;

/* Returns: nothing; adds one observation (seconds, or a count for
 * batch_tokens) to h with the latency (size) buckets. */
void us_histogram_observe(us_histogram *h, double v, int size_buckets);

/* Returns: the metric index of a request body case (0 = none). */
int us_metrics_kind_index(int body_case);

/* Renders the text exposition into a malloc'd buffer (*out, *len).
 * Returns: 0; -1 when out of memory (*out NULL). */
int us_serve_metrics_render(const us_serve_metrics *m, char **out, size_t *len);

#endif
