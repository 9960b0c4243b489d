/*
 * pingpong.c — MPI latency and bandwidth between the first and last rank.
 *
 * Lab measurement tool (deploy/lab/README.md): run with two ranks on two
 * different hosts, e.g. `deploy/lab/lab.sh run -n 2 --host h0,h1 build/pingpong`.
 *
 *   --mode latency  (default) rank 0 sends SIZE bytes, the last rank sends
 *                   them back; half round trip = time / (2 * iters), and
 *                   MB/s = SIZE / half round trip (the convention of LAB.md).
 *   --mode stream   rank 0 sends iters messages of SIZE bytes back to back
 *                   (a window of 8 outstanding MPI_Isend), the last rank
 *                   acknowledges the last one with 1 byte; MB/s = total / time.
 *                   This is the rate one direction of the link sustains, so
 *                   a tbf limit on rank 0's host shows up directly.
 *
 * Iterations per size come from a time budget (--budget-ms, default 300 per
 * size): two warm-up round trips estimate the cost, rank 0 picks the count
 * in [--min-iters, --max-iters] and tells its partner. Output: one JSON line
 * per size on stdout (bench, mode, bytes, iters, half_rtt_us or seconds,
 * mb_per_s, both hostnames, max RSS), then a short human table on stderr.
 * Payloads carry a position-dependent pattern that the receiving side checks
 * after each size: a corrupt message is reported and the exit status is 1.
 * Ranks between the first and the last only wait in the final barrier.
 * Exit 0, 1 on an MPI error or a corrupt payload, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kernels/us_status.h"

#define MAX_SIZES     32
#define STREAM_WINDOW 8
#define TAG_DATA      1
#define TAG_CTRL      2

typedef struct pp_opts {
    int    stream;              /* 0 latency, 1 stream */
    long   sizes[MAX_SIZES];
    int    n_sizes;
    double budget_ms;
    long   min_iters, max_iters;
    const char *label;
} pp_opts;

typedef struct pp_result {
    long   bytes, iters;
    double seconds;
} pp_result;

static const char usage_text[] =
    "usage: pingpong [--mode latency|stream] [--sizes B,B,...] [--budget-ms MS]\n"
    "                [--min-iters N] [--max-iters N] [--label TEXT]\n"
    "Measures between rank 0 and the last rank (needs >= 2 ranks). Sizes accept\n"
    "suffixes k/m (KiB/MiB); default 8,65536,1048576.\n";

static int parse_sizes(const char *text, pp_opts *o, us_err *err)
{
    o->n_sizes = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno != 0 || end == p || v < 1)
            return us_err_set(err, US_EINVAL, "--sizes: bad size at '%s'", p);
        if (*end == 'k' || *end == 'K') { v <<= 10; end++; }
        else if (*end == 'm' || *end == 'M') { v <<= 20; end++; }
        if (v > (256L << 20))
            return us_err_set(err, US_EINVAL, "--sizes: %ld bytes is above 256 MiB", v);
        if (o->n_sizes == MAX_SIZES)
            return us_err_set(err, US_EINVAL, "--sizes: more than %d sizes", MAX_SIZES);
        o->sizes[o->n_sizes++] = v;
        if (*end == ',') end++;
        else if (*end != '\0')
            return us_err_set(err, US_EINVAL, "--sizes: unexpected '%c' in '%s'", *end, text);
        p = end;
    }
    if (o->n_sizes == 0)
        return us_err_set(err, US_EINVAL, "--sizes: empty list");
    return US_OK;
}

static int parse_long(const char *option, const char *text, long min, long max,
                      long *out, us_err *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return us_err_set(err, US_EINVAL, "%s: '%s' is not an integer in [%ld, %ld]",
                          option, text, min, max);
    *out = v;
    return US_OK;
}

/* Byte i of a message of `bytes` bytes: differs by size and position (and
 * by 4 KiB page), so a truncated, shifted or stale buffer is caught. */
static unsigned char pattern_byte(long bytes, long i)
{
    return (unsigned char)((i * 131 + bytes * 7 + (i >> 12)) & 0xff);
}

static void pattern_fill(char *buf, long bytes)
{
    for (long i = 0; i < bytes; i++)
        buf[i] = (char)pattern_byte(bytes, i);
}

/* Offset of the first byte that differs from the pattern, or -1. */
static long pattern_check(const char *buf, long bytes)
{
    for (long i = 0; i < bytes; i++)
        if ((unsigned char)buf[i] != pattern_byte(bytes, i))
            return i;
    return -1;
}

/* One exchange pattern repeated iters times between rank 0 and peer. */
static int run_pattern(const pp_opts *o, int rank, int peer, char *buf, long bytes,
                       long iters, MPI_Comm comm)
{
    int rc = MPI_SUCCESS;
    if (!o->stream) {
        for (long i = 0; i < iters && rc == MPI_SUCCESS; i++) {
            if (rank == 0) {
                rc = MPI_Send(buf, (int)bytes, MPI_BYTE, peer, TAG_DATA, comm);
                if (rc == MPI_SUCCESS)
                    rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, TAG_DATA, comm,
                                  MPI_STATUS_IGNORE);
            } else {
                rc = MPI_Recv(buf, (int)bytes, MPI_BYTE, 0, TAG_DATA, comm, MPI_STATUS_IGNORE);
                if (rc == MPI_SUCCESS)
                    rc = MPI_Send(buf, (int)bytes, MPI_BYTE, 0, TAG_DATA, comm);
            }
        }
        return rc;
    }
    /* Stream: keep STREAM_WINDOW sends/receives in flight, then a 1-byte ack
     * so rank 0's clock stops only when everything has arrived. */
    MPI_Request reqs[STREAM_WINDOW];
    char ack = 0;
    for (long i = 0; i < iters && rc == MPI_SUCCESS; i += STREAM_WINDOW) {
        int n = (int)(iters - i < STREAM_WINDOW ? iters - i : STREAM_WINDOW);
        for (int k = 0; k < n && rc == MPI_SUCCESS; k++)
            rc = rank == 0
                ? MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, TAG_DATA, comm, &reqs[k])
                : MPI_Irecv(buf, (int)bytes, MPI_BYTE, 0, TAG_DATA, comm, &reqs[k]);
        if (rc == MPI_SUCCESS)
            rc = MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
    }
    if (rc != MPI_SUCCESS)
        return rc;
    return rank == 0 ? MPI_Recv(&ack, 1, MPI_BYTE, peer, TAG_CTRL, comm, MPI_STATUS_IGNORE)
                     : MPI_Send(&ack, 1, MPI_BYTE, 0, TAG_CTRL, comm);
}

static int measure(const pp_opts *o, int rank, int peer, char *buf, long bytes,
                   MPI_Comm comm, pp_result *res)
{
    int rc;
    long iters = 2;
    /* Untimed warm-up (connection set-up, first-touch of buffers), then a
     * short timed run to size the measured one. */
    if ((rc = run_pattern(o, rank, peer, buf, bytes, iters, comm)) != MPI_SUCCESS)
        return rc;
    double t0 = MPI_Wtime();
    if ((rc = run_pattern(o, rank, peer, buf, bytes, iters, comm)) != MPI_SUCCESS)
        return rc;
    double warm = MPI_Wtime() - t0;
    if (rank == 0) {
        double per_iter = warm / (double)iters;
        double want = per_iter > 0 ? o->budget_ms / 1000.0 / per_iter : (double)o->max_iters;
        iters = want < (double)o->min_iters ? o->min_iters
              : want > (double)o->max_iters ? o->max_iters : (long)want;
        if (o->stream && iters < STREAM_WINDOW)
            iters = STREAM_WINDOW;
        rc = MPI_Send(&iters, 1, MPI_LONG, peer, TAG_CTRL, comm);
    } else {
        rc = MPI_Recv(&iters, 1, MPI_LONG, 0, TAG_CTRL, comm, MPI_STATUS_IGNORE);
    }
    if (rc != MPI_SUCCESS)
        return rc;
    t0 = MPI_Wtime();
    if ((rc = run_pattern(o, rank, peer, buf, bytes, iters, comm)) != MPI_SUCCESS)
        return rc;
    res->bytes = bytes;
    res->iters = iters;
    res->seconds = MPI_Wtime() - t0;
    return MPI_SUCCESS;
}

int main(int argc, char **argv)
{
    pp_opts o = { .budget_ms = 300, .min_iters = 3, .max_iters = 100000, .label = "" };
    us_err err = {0};
    parse_sizes("8,65536,1048576", &o, NULL);
    static const struct option long_opts[] = {
        { "mode", required_argument, 0, 'm' },
        { "sizes", required_argument, 0, 's' },
        { "budget-ms", required_argument, 0, 'b' },
        { "min-iters", required_argument, 0, 'i' },
        { "max-iters", required_argument, 0, 'x' },
        { "label", required_argument, 0, 'l' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int ch, rc = US_OK;
    long v;
    while (rc == US_OK && (ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "latency") == 0) o.stream = 0;
            else if (strcmp(optarg, "stream") == 0) o.stream = 1;
            else rc = us_err_set(&err, US_EINVAL, "--mode: '%s' is not latency|stream", optarg);
            break;
        case 's': rc = parse_sizes(optarg, &o, &err); break;
        case 'b':
            rc = parse_long("--budget-ms", optarg, 1, 600000, &v, &err);
            o.budget_ms = (double)v;
            break;
        case 'i': rc = parse_long("--min-iters", optarg, 1, 100000000, &o.min_iters, &err); break;
        case 'x': rc = parse_long("--max-iters", optarg, 1, 100000000, &o.max_iters, &err); break;
        case 'l': o.label = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default:  fputs(usage_text, stderr); return 2;
        }
    }
    if (rc == US_OK && optind != argc)
        rc = us_err_set(&err, US_EINVAL, "unexpected argument '%s'", argv[optind]);
    if (rc == US_OK && o.min_iters > o.max_iters)
        rc = us_err_set(&err, US_EINVAL, "--min-iters %ld is above --max-iters %ld",
                        o.min_iters, o.max_iters);
    if (rc != US_OK) {
        fprintf(stderr, "pingpong: %s\n\n%s", err.msg, usage_text);
        return 2;
    }

    MPI_Init(&argc, &argv);
    int rank, size, status = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (size < 2) {
        if (rank == 0)
            fprintf(stderr, "pingpong: needs at least 2 ranks, got %d\n", size);
        MPI_Finalize();
        return 2;
    }
    int peer = size - 1;
    char host[MPI_MAX_PROCESSOR_NAME] = "?", peer_host[MPI_MAX_PROCESSOR_NAME] = "?";
    gethostname(host, sizeof host - 1);
    if (rank == 0)
        MPI_Recv(peer_host, sizeof peer_host, MPI_CHAR, peer, TAG_CTRL, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    else if (rank == peer)
        MPI_Send(host, (int)strlen(host) + 1, MPI_CHAR, 0, TAG_CTRL, MPI_COMM_WORLD);

    long max_bytes = 1;
    for (int i = 0; i < o.n_sizes; i++)
        if (o.sizes[i] > max_bytes)
            max_bytes = o.sizes[i];
    char *buf = NULL;
    if (rank == 0 || rank == peer) {
        buf = malloc((size_t)max_bytes);
        if (buf == NULL) {
            fprintf(stderr, "pingpong: rank %d: cannot allocate %ld bytes\n", rank, max_bytes);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    pp_result results[MAX_SIZES];
    for (int i = 0; i < o.n_sizes && (rank == 0 || rank == peer); i++) {
        /* Rank 0 sends the pattern; the peer starts from zeros, so what each
         * side holds afterwards proves the bytes crossed the link intact. */
        if (rank == 0)
            pattern_fill(buf, o.sizes[i]);
        else
            memset(buf, 0, (size_t)o.sizes[i]);
        rc = measure(&o, rank, peer, buf, o.sizes[i], MPI_COMM_WORLD, &results[i]);
        if (rc == MPI_SUCCESS && (rank == peer || !o.stream)) {
            long bad = pattern_check(buf, o.sizes[i]);
            if (bad >= 0) {
                fprintf(stderr, "pingpong: rank %d: %ld-byte message corrupt at offset %ld\n",
                        rank, o.sizes[i], bad);
                status = 1;
            }
        }
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            fprintf(stderr, "pingpong: rank %d: %ld bytes with rank %d: %s\n",
                    rank, o.sizes[i], rank == 0 ? peer : 0, msg);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    if (rank == 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        const char *mode = o.stream ? "stream" : "latency";
        for (int i = 0; i < o.n_sizes; i++) {
            const pp_result *r = &results[i];
            double half_rtt_us = r->seconds / (2.0 * (double)r->iters) * 1e6;
            double mb_per_s = o.stream ? (double)r->bytes * (double)r->iters / r->seconds / 1e6
                                       : (double)r->bytes / half_rtt_us;
            printf("{\"bench\":\"lab_pingpong\",\"label\":\"%s\",\"mode\":\"%s\","
                   "\"bytes\":%ld,\"iters\":%ld,\"seconds\":%.6f,",
                   o.label, mode, r->bytes, r->iters, r->seconds);
            if (!o.stream)
                printf("\"half_rtt_us\":%.2f,", half_rtt_us);
            printf("\"mb_per_s\":%.2f,\"host0\":\"%s\",\"host1\":\"%s\",\"ranks\":%d,"
                   "\"maxrss_kib\":%ld}\n", mb_per_s, host, peer_host, size, ru.ru_maxrss);
        }
        fflush(stdout);
        fprintf(stderr, "pingpong %s %s <-> %s%s%s\n%10s %8s %12s %10s\n", mode, host,
                peer_host, o.label[0] ? " " : "", o.label, "bytes", "iters",
                o.stream ? "seconds" : "half_rtt_us", "MB/s");
        for (int i = 0; i < o.n_sizes; i++) {
            const pp_result *r = &results[i];
            double half_rtt_us = r->seconds / (2.0 * (double)r->iters) * 1e6;
            double mb_per_s = o.stream ? (double)r->bytes * (double)r->iters / r->seconds / 1e6
                                       : (double)r->bytes / half_rtt_us;
            fprintf(stderr, "%10ld %8ld %12.2f %10.2f\n", r->bytes, r->iters,
                    o.stream ? r->seconds : half_rtt_us, mb_per_s);
        }
    }
    free(buf);
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        status = 1;
    MPI_Finalize();
    return status;
}
