/* store_check.c — whole-store verify and summary: see store_check.h. */
#include "shard/store_check.h"

#include <stdlib.h>
#include <string.h>

#include "shard/store.h"

/* Compares each --against table of an open, undamaged shard with its file;
 * returns the number of tables that failed. */
static int compare_against(us_store *st, uint32_t shard, const us_store_check_opts *o,
                           us_store_check_report *local)
{
    int failures = 0;
    for (size_t a = 0; a < o->n_against; a++) {
        us_err e = {0};
        size_t ti;
        uint64_t rows = 0;
        int rc = us_store_find_table(st, o->against[a].name, &ti, &e);
        if (rc == US_OK)
            rc = us_import_compare(st, ti, o->against[a].path, o->against[a].tensor, &rows, &e);
        if (rc != US_OK) {
            if (o->log)
                fprintf(o->log, "verify: shard %u: %s\n", shard, e.msg);
            failures++;
        }
        local->rows_compared += rows;
    }
    return failures;
}

/* Checks one shard into *local; returns the number of failures. */
static int check_shard(const us_manifest *m, uint32_t shard, const us_store_check_opts *o,
                       us_store_check_report *local)
{
    /* open unchecked: us_store_verify checks and counts every block */
    us_store_opts so = { .backend = US_BACKEND_MMAP, .shard_index = (int)shard,
                         .expect_shards = (int)o->expect_shards,
                         .check = US_STORE_CHECK_FIRST_USE };
    us_store *st;
    us_err e = {0};
    if (us_store_open(o->dir, &so, &st, &e) != US_OK) {
        if (o->log)
            fprintf(o->log, "verify: shard %u: %s\n", shard, e.msg);
        return 1;
    }
    int failures = 0;
    us_verify_report rep;
    if (us_store_verify(st, true, &rep, &e) != US_OK)
        failures++;
    for (size_t i = 0; i < m->n_tables; i++)
        local->files += !m->tables[i].synthetic;
    local->blocks += rep.blocks_checked;
    local->bad_blocks += rep.blocks_bad;
    local->bytes += rep.bytes_checked;
    if (rep.blocks_bad == 0)
        failures += compare_against(st, shard, o, local);
    us_store_close(st);
    return failures;
}

int us_store_check(MPI_Comm comm, const us_store_check_opts *o, us_store_check_report *rep,
                   us_err *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double t0 = MPI_Wtime();
    us_store_check_report local = {0};
    us_manifest m;
    int mrc = us_manifest_read(o->dir, &m, err);
    if (mrc == US_OK && o->expect_shards > 0 && m.shard_count != o->expect_shards) {
        mrc = us_err_set(err, US_EINVAL, "store '%s' has %u shards, expected %u (shard count "
                         "mismatch)", o->dir, m.shard_count, o->expect_shards);
        us_manifest_free(&m);
    }
    if (mrc != US_OK) {
        local.failures++;
        m.shard_count = 0;
    }
    for (uint32_t s = (uint32_t)rank; s < m.shard_count; s += (uint32_t)size)
        local.failures += check_shard(&m, s, o, &local);
    if (m.shard_count > 0)
        us_manifest_free(&m);
    uint64_t sums[5] = { local.files, local.blocks, local.bad_blocks, local.bytes,
                         local.rows_compared }, total[5];
    double secs = MPI_Wtime() - t0;
    memset(rep, 0, sizeof *rep);
    MPI_Allreduce(sums, total, 5, MPI_UINT64_T, MPI_SUM, comm);
    MPI_Allreduce(&local.failures, &rep->failures, 1, MPI_INT, MPI_SUM, comm);
    MPI_Allreduce(&secs, &rep->seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
    rep->files = total[0];
    rep->blocks = total[1];
    rep->bad_blocks = total[2];
    rep->bytes = total[3];
    rep->rows_compared = total[4];
    rep->manifest_failed = mrc != US_OK;
    if (mrc != US_OK)
        return mrc;
    return rep->failures ? US_ECORRUPT : US_OK;
}

int us_store_summarize(const us_manifest *m, us_store_summary *s, us_err *err)
{
    memset(s, 0, sizeof *s);
    s->table_bytes = calloc(m->n_tables ? m->n_tables : 1, sizeof *s->table_bytes);
    s->shard_blocks = calloc(m->shard_count, sizeof *s->shard_blocks);
    s->shard_bytes = calloc(m->shard_count, sizeof *s->shard_bytes);
    if (s->table_bytes == NULL || s->shard_blocks == NULL || s->shard_bytes == NULL) {
        us_store_summary_free(s);
        return us_err_set(err, US_ENOMEM, "out of memory for the summary of %u shards",
                          m->shard_count);
    }
    for (size_t i = 0; i < m->n_tables; i++) {
        const us_table_layout *t = &m->tables[i];
        if (t->synthetic)
            continue;
        for (uint32_t sh = 0; sh < m->shard_count; sh++) {
            uint64_t k = us_layout_shard_blocks(t, m->shard_count, sh, NULL);
            s->shard_blocks[sh] += k;
            s->shard_bytes[sh] += us_layout_file_bytes(t, k);
            s->table_bytes[i] += us_layout_file_bytes(t, k);
        }
        s->total_blocks += t->n_blocks;
    }
    uint64_t max_blocks = 0;
    for (uint32_t sh = 0; sh < m->shard_count; sh++) {
        max_blocks = s->shard_blocks[sh] > max_blocks ? s->shard_blocks[sh] : max_blocks;
        s->total_bytes += s->shard_bytes[sh];
    }
    double mean = (double)s->total_blocks / m->shard_count;
    s->balance = mean > 0 ? max_blocks / mean : 1.0;
    return US_OK;
}

void us_store_summary_free(us_store_summary *s)
{
    free(s->table_bytes);
    free(s->shard_blocks);
    free(s->shard_bytes);
    memset(s, 0, sizeof *s);
}
