/* infer_multi.c — several coordinators, one writer (see infer_multi.h). */
#include "coordinator/infer/infer_multi.h"
#include "kernels/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A finished line: u64 little-endian sequence index, then the line's bytes.
 * An end message: end_msg. One source's messages arrive in send order (MPI
 * does not let them overtake), so every line precedes its sender's end. */
#define TAG_LINE 201
#define TAG_END  202

typedef struct end_msg {
    int32_t  rc;
    uint32_t reserved;
    uint64_t prompt_tokens, generated_tokens, steps;
    char     msg[US_ERR_MSG_BYTES];
} end_msg;

static int mpi_fail(us_err *err, const us_infer_multi *mc, const char *what)
{
    return us_err_set(err, US_EMPI, "coordinator %d: %s failed", mc->index, what);
}

/* The coordinators' communicator (collective over them only). */
static int make_comm(us_infer_multi *mc, const us_world *w, us_err *err)
{
    MPI_Group world_group, group;
    if (MPI_Comm_group(w->comm, &world_group) != MPI_SUCCESS)
        return mpi_fail(err, mc, "MPI_Comm_group");
    int rc = MPI_Group_incl(world_group, w->n_coordinators, w->coordinator_ranks, &group);
    MPI_Group_free(&world_group);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, mc, "MPI_Group_incl");
    rc = MPI_Comm_create_group(w->comm, group, TAG_LINE, &mc->comm);
    MPI_Group_free(&group);
    if (rc != MPI_SUCCESS) {
        mc->comm = MPI_COMM_NULL;
        return mpi_fail(err, mc, "MPI_Comm_create_group");
    }
    MPI_Comm_set_errhandler(mc->comm, MPI_ERRORS_RETURN);
    return US_OK;
}

int us_infer_multi_open(us_infer_multi *mc, const us_world *w, us_journal *j, size_t n,
                        int start_rc, us_err *err)
{
    memset(mc, 0, sizeof *mc);
    mc->comm = MPI_COMM_NULL;
    mc->index = w->coordinator_index;
    mc->count = w->n_coordinators;
    mc->j = j;
    mc->n = n;
    int rc = make_comm(mc, w, err);
    if (rc != US_OK)
        return rc;
    mc->done = calloc(n ? n : 1, 1);
    if (mc->done == NULL && start_rc == US_OK)
        start_rc = us_err_set(err, US_ENOMEM, "coordinator %d: %zu sequences", mc->index, n);
    /* Everyone learns whether all started, and a coordinator that could not
     * has printed why before any returns (us_comm_agree): none is left
     * waiting in a collective, and the job's teardown cannot hide the cause. */
    if ((rc = us_comm_agree(mc->comm, start_rc, "starting the job", err)) != US_OK)
        return rc;
    long long mine[2] = { (long long)n, -(long long)n }, all[2];
    if (MPI_Allreduce(mine, all, 2, MPI_LONG_LONG, MPI_MIN, mc->comm) != MPI_SUCCESS)
        return mpi_fail(err, mc, "MPI_Allreduce at start");
    if (all[0] != -all[1])
        return us_err_set(err, US_EINVAL, "coordinators read inputs of different sizes (%lld "
                          "and %lld prompts)", all[0], -all[1]);
    for (size_t i = 0; mc->index == 0 && i < n; i++)
        mc->done[i] = (uint8_t)us_journal_is_done(j, i);
    if (n > 0 && MPI_Bcast(mc->done, (int)n, MPI_BYTE, 0, mc->comm) != MPI_SUCCESS)
        return mpi_fail(err, mc, "MPI_Bcast of the finished sequences");
    return US_OK;
}

/* --- the others: lines to coordinator 0 ---------------------------------- */

/* Frees the bytes of sends that completed. */
static int reap_sends(us_infer_multi *mc, us_err *err)
{
    size_t keep = 0;
    for (size_t i = 0; i < mc->n_pending; i++) {
        int done = 0;
        if (MPI_Test(&mc->reqs[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return mpi_fail(err, mc, "sending a line to coordinator 0");
        if (done) {
            free(mc->bufs[i]);
        } else {
            mc->reqs[keep] = mc->reqs[i];
            mc->bufs[keep++] = mc->bufs[i];
        }
    }
    mc->n_pending = keep;
    return US_OK;
}

/* Starts sending bytes (owned from here on) to coordinator 0. */
static int send_owned(us_infer_multi *mc, uint8_t *bytes, size_t len, int tag, us_err *err)
{
    if (mc->n_pending == mc->cap_pending) {
        size_t cap = mc->cap_pending ? 2 * mc->cap_pending : 16;
        MPI_Request *r = realloc(mc->reqs, cap * sizeof *r);
        if (r != NULL)
            mc->reqs = r;
        uint8_t **b = r != NULL ? realloc(mc->bufs, cap * sizeof *b) : NULL;
        if (b == NULL) {
            free(bytes);
            return us_err_set(err, US_ENOMEM, "coordinator %d: lines in flight", mc->index);
        }
        mc->bufs = b;
        mc->cap_pending = cap;
    }
    if (len > INT32_MAX ||
        MPI_Isend(bytes, (int)len, MPI_BYTE, 0, tag, mc->comm, &mc->reqs[mc->n_pending])
            != MPI_SUCCESS) {
        free(bytes);
        return mpi_fail(err, mc, "sending to coordinator 0");
    }
    mc->bufs[mc->n_pending++] = bytes;
    return US_OK;
}

static int sender_is_done(void *ctx, size_t index)
{
    const us_infer_multi *mc = ctx;
    return index < mc->n && mc->done[index];
}

static int sender_finish(void *ctx, size_t index, const char *line, us_err *err)
{
    us_infer_multi *mc = ctx;
    size_t len = strlen(line);
    uint8_t *bytes = malloc(8 + len);
    if (bytes == NULL)
        return us_err_set(err, US_ENOMEM, "coordinator %d: line of sequence %zu", mc->index,
                          index);
    for (int b = 0; b < 8; b++)
        bytes[b] = (uint8_t)((uint64_t)index >> (8 * b));
    memcpy(bytes + 8, line, len);
    return send_owned(mc, bytes, 8 + len, TAG_LINE, err);
}

static int sender_poll(void *ctx, size_t *taken, us_err *err)
{
    *taken = 0;
    return reap_sends(ctx, err);
}

/* --- coordinator 0: the one writer ---------------------------------------- */

static void record_end(us_infer_multi *mc, int source, const end_msg *e)
{
    mc->ends++;
    mc->others.prompt_tokens += e->prompt_tokens;
    mc->others.generated_tokens += e->generated_tokens;
    mc->others.steps += e->steps;
    if (e->rc != US_OK && mc->other_rc == US_OK) {
        mc->other_rc = e->rc;
        us_err_set(&mc->other_err, e->rc, "coordinator %d: %.*s", source,
                   (int)sizeof e->msg - 1, e->msg);
    }
}

/* Journals one NUL-terminated line from `source` (after a journal failure lines are only
 * counted: the job fails, and a rerun decodes them again). */
static void record_line(us_infer_multi *mc, int source, const uint8_t *bytes)
{
    uint64_t index = 0;
    for (int b = 0; b < 8; b++)
        index |= (uint64_t)bytes[b] << (8 * b);
    mc->taken++;
    if (mc->write_rc != US_OK)
        return;
    if (index % (uint64_t)mc->count != (uint64_t)source) {
        mc->write_rc = us_err_set(&mc->write_err, US_EPROTO, "coordinator %d sent sequence "
                                  "%llu, which is not in its part", source,
                                  (unsigned long long)index);
        return;
    }
    mc->write_rc = us_journal_finish(mc->j, (size_t)index, (const char *)bytes + 8,
                                     &mc->write_err);
}

/* Takes one waiting message, if any (*got). */
static int take_one(us_infer_multi *mc, int *got, us_err *err)
{
    MPI_Status st;
    int n = 0;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, mc->comm, got, &st) != MPI_SUCCESS)
        return mpi_fail(err, mc, "MPI_Iprobe");
    if (!*got)
        return US_OK;
    if (MPI_Get_count(&st, MPI_BYTE, &n) != MPI_SUCCESS || n < 0)
        return mpi_fail(err, mc, "MPI_Get_count");
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf == NULL)
        return us_err_set(err, US_ENOMEM, "coordinator 0: a message of %d bytes", n);
    if (MPI_Recv(buf, n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, mc->comm, MPI_STATUS_IGNORE)
            != MPI_SUCCESS) {
        free(buf);
        return mpi_fail(err, mc, "receiving from another coordinator");
    }
    buf[n] = '\0';
    int rc = US_OK;
    if (st.MPI_TAG == TAG_END && (size_t)n == sizeof(end_msg)) {
        end_msg e;
        memcpy(&e, buf, sizeof e);
        e.msg[sizeof e.msg - 1] = '\0';
        record_end(mc, st.MPI_SOURCE, &e);
    } else if (st.MPI_TAG == TAG_LINE && n >= 8) {
        record_line(mc, st.MPI_SOURCE, buf);
    } else {
        rc = us_err_set(err, US_EPROTO, "coordinator 0: a message of %d bytes with tag %d from "
                        "coordinator %d", n, st.MPI_TAG, st.MPI_SOURCE);
    }
    free(buf);
    return rc;
}

static int take_all(us_infer_multi *mc, us_err *err)
{
    int got = 1, rc = US_OK;
    while (rc == US_OK && got)
        rc = take_one(mc, &got, err);
    return rc;
}

static int writer_is_done(void *ctx, size_t index)
{
    const us_infer_multi *mc = ctx;
    return us_journal_is_done(mc->j, index);
}

static int writer_finish(void *ctx, size_t index, const char *line, us_err *err)
{
    const us_infer_multi *mc = ctx;
    return us_journal_finish(mc->j, index, line, err);
}

/* Another's line that could not be journaled fails this run too: a job
 * that cannot write its output should stop decoding. */
static int writer_poll(void *ctx, size_t *taken, us_err *err)
{
    us_infer_multi *mc = ctx;
    int rc = take_all(mc, err);
    *taken = mc->taken;
    mc->taken = 0;
    if (rc == US_OK && mc->write_rc != US_OK) {
        if (err != NULL)
            *err = mc->write_err;
        rc = mc->write_rc;
    }
    return rc;
}

void us_infer_multi_sink(us_infer_multi *mc, us_infer_sink *sink)
{
    if (mc->index == 0)
        *sink = (us_infer_sink){ mc, writer_is_done, writer_finish, writer_poll };
    else
        *sink = (us_infer_sink){ mc, sender_is_done, sender_finish, sender_poll };
}

/* Coordinator 0 after its own part: every other's lines and end. */
static int collect(us_infer_multi *mc, us_memory_dist *d, us_infer_stats *st, us_err *err)
{
    double t0 = us_now_s();
    int rc = US_OK;
    while (rc == US_OK) {
        if ((rc = take_all(mc, err)) != US_OK || mc->ends == mc->count - 1)
            break;
        rc = us_memory_dist_idle(d, err);   /* the others' cycles need this rank */
    }
    st->finished += mc->taken;
    mc->taken = 0;
    st->prompt_tokens += mc->others.prompt_tokens;
    st->generated_tokens += mc->others.generated_tokens;
    st->steps += mc->others.steps;
    st->seconds += us_now_s() - t0;
    return rc;
}

int us_infer_multi_end(us_infer_multi *mc, us_memory_dist *d, int run_rc, const us_err *run_err,
                       us_infer_stats *st, us_err *err)
{
    if (run_rc != US_OK && err != NULL && run_err != NULL && err != run_err)
        *err = *run_err;
    if (mc->index != 0) {
        end_msg *e = calloc(1, sizeof *e);
        if (e == NULL)
            return us_err_set(err, US_ENOMEM, "coordinator %d: end message", mc->index);
        *e = (end_msg){ .rc = run_rc, .prompt_tokens = st->prompt_tokens,
                        .generated_tokens = st->generated_tokens, .steps = st->steps };
        if (run_rc != US_OK && run_err != NULL)
            snprintf(e->msg, sizeof e->msg, "%s", run_err->msg);
        int rc = send_owned(mc, (uint8_t *)e, sizeof *e, TAG_END, err);
        return rc != US_OK ? rc : run_rc;
    }
    us_err collect_err = {0};
    int rc = collect(mc, d, st, &collect_err);
    if (rc != US_OK) {
        if (err != NULL)
            *err = collect_err;
        return rc;
    }
    if (run_rc != US_OK)
        return run_rc;
    if (mc->write_rc != US_OK || mc->other_rc != US_OK) {
        if (err != NULL)
            *err = mc->write_rc != US_OK ? mc->write_err : mc->other_err;
        return mc->write_rc != US_OK ? mc->write_rc : mc->other_rc;
    }
    return US_OK;
}

void us_infer_multi_close(us_infer_multi *mc)
{
    if (mc->n_pending > 0)
        MPI_Waitall((int)mc->n_pending, mc->reqs, MPI_STATUSES_IGNORE);
    for (size_t i = 0; i < mc->n_pending; i++)
        free(mc->bufs[i]);
    free(mc->reqs);
    free(mc->bufs);
    free(mc->done);
    if (mc->comm != MPI_COMM_NULL)
        MPI_Comm_free(&mc->comm);
    memset(mc, 0, sizeof *mc);
    mc->comm = MPI_COMM_NULL;
}
