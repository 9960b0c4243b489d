/*
 * import.c — parallel import of tensor files into a store (see import.h).
 */
#include "shard/import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/world.h"
#include "shard/durable.h"
#include "shard/manifest.h"
#include "shard/rowcodec.h"
#include "shard/store.h"
#include "shard/store_write.h"
#include "shard/tensorfile.h"

typedef struct import_ctx {
    us_tensor_file       *file;
    const us_tensor_info *tensor;
    uint8_t              *in_buf;     /* one block of input rows */
    size_t                in_bytes;
    uint64_t              bytes_read;
    /* progress (rank 0) */
    bool     progress;
    uint64_t blocks_done, blocks_total;
    double   t0;
    int      last_pct;
} import_ctx;

/* Agreement: every rank learns the lowest (most negative) status and the
 * rank that has it; a rank that was fine reports who failed. */
/* Failing ranks' messages are out before any rank returns (proto/world.h). */
static int agree(MPI_Comm comm, int rc, us_err *err)
{
    return us_comm_agree(comm, rc, "import", err);
}

static int fill_from_tensor(void *vctx, const us_table_layout *t, uint64_t block,
                            uint8_t *slot, us_err *err)
{
    import_ctx *c = vctx;
    uint64_t row0 = block << t->block_bits, rows = us_layout_block_rows(t, block);
    /* same dtype: the stored rows are the file's bytes; read straight into the slot */
    bool same = c->tensor->dtype == t->dtype;
    int rc = us_tf_read_rows(c->file, c->tensor, row0, rows, same ? slot : c->in_buf,
                             same ? t->block_slot_bytes : c->in_bytes, err);
    if (rc != US_OK)
        return rc;
    c->bytes_read += rows * c->tensor->row_bytes;
    if (!same) {
        float *scales = t->dtype == US_DTYPE_INT8 ? (float *)(slot + t->scales_offset_bytes) : NULL;
        rc = us_rows_encode(slot, scales, t->dtype, c->in_buf, c->tensor->dtype, rows, t->dim,
                            row0, err);
        if (rc != US_OK)
            return us_err_prefix(err, "table '%s' from '%s'", t->name, us_tf_path(c->file));
    }
    if (c->progress) {
        c->blocks_done++;
        int pct = (int)(100 * c->blocks_done / (c->blocks_total ? c->blocks_total : 1));
        if (pct >= c->last_pct + 10 || c->blocks_done == c->blocks_total) {
            double dt = MPI_Wtime() - c->t0;
            fprintf(stderr, "import: rank 0: %llu/%llu blocks (%d%%), %.1f MB read, %.2f s\n",
                    (unsigned long long)c->blocks_done, (unsigned long long)c->blocks_total,
                    pct, c->bytes_read / 1e6, dt);
            c->last_pct = pct;
        }
    }
    return US_OK;
}

/* Opens every input and builds the layouts; identical on every rank. */
static int prepare(const us_import_opts *o, const us_import_table *tables, size_t n,
                   us_tensor_file **files, const us_tensor_info **tensors, us_manifest *m,
                   us_err *err)
{
    if (o->out_dir == NULL || o->out_dir[0] == '\0')
        return us_err_set(err, US_EINVAL, "import: no output directory");
    if (o->shards < 1 || o->shards > US_MAX_SHARDS)
        return us_err_set(err, US_EINVAL, "import: shard count %u outside [1, %d]", o->shards,
                          US_MAX_SHARDS);
    if (n == 0)
        return us_err_set(err, US_EINVAL, "import: no tables given");
    int rc = us_manifest_alloc(m, o->shards, n, err);
    if (rc != US_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const us_import_table *it = &tables[i];
        for (size_t j = 0; j < i; j++)
            if (strcmp(tables[j].name, it->name) == 0)
                return us_err_set(err, US_EINVAL, "import: table name '%s' given twice",
                                  it->name);
        us_table_layout t = {
            .table_id = (uint32_t)i, .name = it->name, .block_bits = o->block_bits,
            .placement_seed = o->placement_seed, .dtype = o->dtype,
        };
        if (it->synthetic) {
            t.synthetic = true;
            t.synthetic_seed = o->synthetic_seed;
            t.rows = it->rows;
            t.dim = it->dim;
            if (o->keep_dtype)
                t.dtype = US_DTYPE_F32;
        } else {
            if ((rc = us_tf_open(it->path, &files[i], err)) != US_OK)
                return us_err_prefix(err, "table '%s'", it->name);
            if ((rc = us_tf_find(files[i], it->tensor, &tensors[i], err)) != US_OK)
                return us_err_prefix(err, "table '%s'", it->name);
            const us_tensor_info *ti = tensors[i];
            if (ti->ndim != 2)
                return us_err_set(err, US_EINVAL, "table '%s': tensor '%s' in '%s' has %d "
                                  "dimensions; a table needs 2 (rows x dim)", it->name,
                                  ti->name, it->path, ti->ndim);
            if (ti->dtype == US_DTYPE_INT8)
                return us_err_set(err, US_EINVAL, "table '%s': tensor '%s' in '%s' is int8 "
                                  "without row scales; import f32/bf16/f16 and use "
                                  "--dtype int8", it->name, ti->name, it->path);
            if (ti->shape[1] == 0 || ti->shape[1] > US_MAX_DIM)
                return us_err_set(err, US_EINVAL, "table '%s': tensor '%s' has dim %llu "
                                  "outside [1, %u]", it->name, ti->name,
                                  (unsigned long long)ti->shape[1], US_MAX_DIM);
            t.rows = ti->shape[0];
            t.dim = (uint32_t)ti->shape[1];
            if (o->keep_dtype)
                t.dtype = ti->dtype;
        }
        if ((rc = us_table_layout_init(&t, err)) != US_OK)
            return us_err_prefix(err, "import");
        if ((rc = us_manifest_set_table(m, i, &t, err)) != US_OK)
            return rc;
    }
    return US_OK;
}

/* The plan: every input's identity (path, tensor, size, mtime) and every
 * option. A rerun after a crash resumes only under an identical plan. */
static char *build_plan(const us_import_opts *o, const us_import_table *tables, size_t n,
                        const us_manifest *m, const us_tensor_info **tensors)
{
    size_t cap = 512 + n * (2 * 4096 + 512), len = 0;
    char *plan = malloc(cap);
    if (plan == NULL)
        return NULL;
    len += (size_t)snprintf(plan + len, cap - len, "ultrashard import plan 1\nshards %u\n"
                            "block_bits %u\nseed %llu\nsynthetic_seed %llu\n", o->shards,
                            o->block_bits, (unsigned long long)o->placement_seed,
                            (unsigned long long)o->synthetic_seed);
    for (size_t i = 0; i < n && len < cap; i++) {
        const us_table_layout *t = &m->tables[i];
        struct stat st = {0};
        if (!tables[i].synthetic)
            stat(tables[i].path, &st);
        len += (size_t)snprintf(plan + len, cap - len, "table %s rows %llu dim %u dtype %s "
                                "synthetic %d path %s tensor %s offset %llu size %lld "
                                "mtime %lld.%09ld\n", t->name, (unsigned long long)t->rows,
                                t->dim, us_dtype_name(t->dtype), (int)t->synthetic,
                                tables[i].synthetic ? "-" : tables[i].path,
                                tensors[i] ? tensors[i]->name : "-",
                                tensors[i] ? (unsigned long long)tensors[i]->offset_bytes : 0ull,
                                (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                st.st_mtim.tv_nsec);
    }
    return plan;
}

/* One import on one rank: the inputs, the manifest being built, and what
 * this rank wrote. */
typedef struct import_run {
    MPI_Comm comm;
    int      rank, size;
    const us_import_opts  *opts;
    const us_import_table *tables;
    size_t   n;
    us_manifest m;
    us_tensor_file **files;           /* [n]; NULL for synthetic tables */
    const us_tensor_info **tensors;   /* [n] */
    char     stage[4096];
    int      resumed;                 /* the stage is a crashed run's, same plan */
    uint64_t written, blocks, resumed_files;
    int      files_written;           /* shard files this rank wrote (not kept) */
    import_ctx ctx;
} import_run;

/* Rank 0 creates (or, after a crash under the same plan, reopens) the
 * staging directory; every rank learns whether this is a resumed run. */
static int begin_stage(import_run *run, us_err *err)
{
    const us_import_opts *o = run->opts;
    int rc = US_OK;
    if (run->rank == 0) {
        char *plan = build_plan(o, run->tables, run->n, &run->m, run->tensors);
        bool again = false;
        rc = plan ? us_stage_begin_plan(o->out_dir, plan, run->stage, sizeof run->stage,
                                        &again, err)
                  : us_err_set(err, US_ENOMEM, "import: out of memory for the plan");
        run->resumed = again;
        free(plan);
    }
    if ((rc = agree(run->comm, rc, err)) != US_OK)
        return rc;
    MPI_Bcast(&run->resumed, 1, MPI_INT, 0, run->comm);
    uint64_t id[2] = { run->m.store_id_hi, run->m.store_id_lo };   /* one store: rank 0's id */
    MPI_Bcast(id, 2, MPI_UINT64_T, 0, run->comm);
    us_manifest_set_store_id(&run->m, id[0], id[1]);
    snprintf(run->stage, sizeof run->stage, "%s.partial", o->out_dir);
    return US_OK;
}

/* Progress counts rank 0's own blocks. */
static void count_progress_blocks(import_run *run)
{
    const us_manifest *m = &run->m;
    for (size_t i = 0; i < run->n && run->ctx.progress; i++)
        if (!m->tables[i].synthetic)
            for (uint32_t s = (uint32_t)run->rank; s < m->shard_count; s += (uint32_t)run->size)
                run->ctx.blocks_total += us_layout_shard_blocks(&m->tables[i], m->shard_count,
                                                                s, NULL);
}

/* Writes this rank's shard files of table i (s = rank, rank + size, ...). */
static int write_table_shards(import_run *run, size_t i, us_err *err)
{
    const us_manifest *m = &run->m;
    const us_table_layout *t = &m->tables[i];
    import_ctx *ctx = &run->ctx;
    ctx->file = run->files[i];
    ctx->tensor = run->tensors[i];
    ctx->in_bytes = t->rows_per_block * run->tensors[i]->row_bytes;
    ctx->in_buf = malloc(ctx->in_bytes ? ctx->in_bytes : 1);
    if (ctx->in_buf == NULL)
        return us_err_set(err, US_ENOMEM, "import: table '%s': %zu bytes for one block",
                          t->name, ctx->in_bytes);
    int rc = US_OK;
    for (uint32_t s = (uint32_t)run->rank; s < m->shard_count && rc == US_OK;
         s += (uint32_t)run->size) {
        uint64_t bytes = 0;
        /* after a crash: a committed shard file is kept, only checksummed */
        if (run->resumed && us_shard_file_resume(run->stage, t, m->shard_count, s,
                                                 m->block_crc[i], &bytes, NULL) == US_OK) {
            run->resumed_files++;
        } else {
            rc = us_shard_file_write(run->stage, t, m->shard_count, s, fill_from_tensor, ctx,
                                     m->block_crc[i], &bytes, err);
            if (rc == US_OK && run->opts->after_file_written != NULL)
                run->opts->after_file_written(run->opts->after_file_ctx, ++run->files_written);
        }
        run->written += bytes;
        run->blocks += bytes ? us_layout_shard_blocks(t, m->shard_count, s, NULL) : 0;
    }
    free(ctx->in_buf);
    ctx->in_buf = NULL;
    return rc;
}

/* Each block's CRC was set by exactly one rank; the others hold 0, so a
 * bitwise OR across ranks assembles the full table (in 2^28-block pieces:
 * MPI counts are ints). */
static int combine_block_crcs(import_run *run, us_err *err)
{
    for (size_t i = 0; i < run->n; i++) {
        const us_table_layout *t = &run->m.tables[i];
        if (t->synthetic)
            continue;
        for (uint64_t off = 0; off < t->n_blocks; off += 1u << 28) {
            uint64_t cnt = t->n_blocks - off < (1u << 28) ? t->n_blocks - off : (1u << 28);
            if (MPI_Allreduce(MPI_IN_PLACE, run->m.block_crc[i] + off, (int)cnt, MPI_UINT32_T,
                              MPI_BOR, run->comm) != MPI_SUCCESS)
                return us_err_set(err, US_EMPI, "import: combining block checksums failed");
        }
    }
    return US_OK;
}

/* Collective: totals over all ranks, wall time of the slowest. */
static void sum_stats(const import_run *run, double t0, us_import_stats *stats)
{
    uint64_t local[4] = { run->ctx.bytes_read, run->written, run->blocks, run->resumed_files };
    uint64_t total[4] = { 0, 0, 0, 0 };
    double secs = MPI_Wtime() - t0, max_secs = secs;
    MPI_Allreduce(local, total, 4, MPI_UINT64_T, MPI_SUM, run->comm);
    MPI_Allreduce(&secs, &max_secs, 1, MPI_DOUBLE, MPI_MAX, run->comm);
    *stats = (us_import_stats){ total[0], total[1], total[2], max_secs, total[3] };
}

/* Opened inputs to written, committed store; agreement after every phase. */
static int import_phases(import_run *run, us_err *err)
{
    int rc = begin_stage(run, err);
    if (rc != US_OK)
        return rc;
    count_progress_blocks(run);
    for (size_t i = 0; i < run->n && rc == US_OK; i++)
        if (!run->m.tables[i].synthetic)
            rc = write_table_shards(run, i, err);
    if ((rc = agree(run->comm, rc, err)) != US_OK)
        goto remove_stage;
    rc = combine_block_crcs(run, err);
    if ((rc = agree(run->comm, rc, err)) != US_OK)
        goto remove_stage;
    if (run->rank == 0) {
        rc = us_manifest_write(run->stage, &run->m, err);
        if (rc == US_OK)
            rc = us_stage_commit(run->stage, run->opts->out_dir, err);
    }
    if ((rc = agree(run->comm, rc, err)) == US_OK)
        return US_OK;
remove_stage:
    MPI_Barrier(run->comm);   /* (collective above) every rank has closed its files */
    if (run->rank == 0)
        us_stage_abort(run->stage);
    return rc;
}

int us_import(MPI_Comm comm, const us_import_opts *o, const us_import_table *tables,
              size_t n, us_import_stats *stats, us_err *err)
{
    double t0 = MPI_Wtime();
    import_run run = { .comm = comm, .opts = o, .tables = tables, .n = n };
    MPI_Comm_rank(comm, &run.rank);
    MPI_Comm_size(comm, &run.size);
    run.ctx = (import_ctx){ .progress = o->progress && run.rank == 0, .t0 = t0,
                            .last_pct = -10 };
    run.files = calloc(n ? n : 1, sizeof *run.files);
    run.tensors = calloc(n ? n : 1, sizeof *run.tensors);
    int rc = run.files && run.tensors ? US_OK
                                      : us_err_set(err, US_ENOMEM, "import: out of memory");
    if (rc == US_OK)
        rc = prepare(o, tables, n, run.files, run.tensors, &run.m, err);
    if ((rc = agree(comm, rc, err)) == US_OK)
        rc = import_phases(&run, err);
    if (stats)
        sum_stats(&run, t0, stats);
    for (size_t i = 0; run.files && i < n; i++)
        us_tf_close(run.files[i]);
    free(run.files);
    free(run.tensors);
    us_manifest_free(&run.m);
    return rc;
}

int us_import_compare(const us_store *store, size_t ti, const char *path, const char *tensor,
                      uint64_t *rows_compared, us_err *err)
{
    const us_manifest *m = us_store_manifest(store);
    *rows_compared = 0;
    if (ti >= m->n_tables)
        return us_err_set(err, US_ERANGE, "compare: table index %zu of %zu", ti, m->n_tables);
    const us_table_layout *t = &m->tables[ti];
    if (t->synthetic)
        return us_err_set(err, US_EINVAL, "compare: table '%s' is synthetic", t->name);
    us_tensor_file *f;
    const us_tensor_info *info;
    int rc = us_tf_open(path, &f, err);
    if (rc != US_OK)
        return rc;
    if ((rc = us_tf_find(f, tensor, &info, err)) != US_OK)
        goto done;
    if (info->ndim != 2 || info->shape[0] != t->rows || info->shape[1] != t->dim) {
        rc = us_err_set(err, US_EINVAL, "compare: tensor '%s' in '%s' is not %llu x %u like "
                        "table '%s'", info->name, path, (unsigned long long)t->rows, t->dim,
                        t->name);
        goto done;
    }
    size_t in_bytes = t->rows_per_block * info->row_bytes;
    uint8_t *in = malloc(in_bytes), *enc = NULL;
    void *slot = NULL;
    if (in == NULL || posix_memalign(&slot, US_SLOT_ALIGN, t->block_slot_bytes) != 0) {
        free(in);
        rc = us_err_set(err, US_ENOMEM, "compare: out of memory");
        goto done;
    }
    enc = slot;
    for (uint64_t b = 0; b < t->n_blocks && rc == US_OK; b++) {
        const uint8_t *have = us_store_block(store, ti, b);
        if (have == NULL)
            continue;
        uint64_t row0 = b << t->block_bits, rows = us_layout_block_rows(t, b);
        if ((rc = us_tf_read_rows(f, info, row0, rows, in, in_bytes, err)) != US_OK)
            break;
        float *scales = t->dtype == US_DTYPE_INT8 ? (float *)(enc + t->scales_offset_bytes) : NULL;
        if ((rc = us_rows_encode(enc, scales, t->dtype, in, info->dtype, rows, t->dim, row0,
                                 err)) != US_OK)
            break;
        for (uint64_t r = 0; r < rows; r++) {
            bool same = memcmp(enc + r * t->row_bytes, have + r * t->row_bytes, t->row_bytes) == 0;
            if (same && scales)
                same = memcmp(&scales[r], have + t->scales_offset_bytes + 4 * r, 4) == 0;
            if (!same) {
                rc = us_err_set(err, US_ECORRUPT, "table '%s' row %llu (block %llu) differs "
                                "from tensor '%s' in '%s'", t->name,
                                (unsigned long long)(row0 + r), (unsigned long long)b,
                                info->name, path);
                break;
            }
            (*rows_compared)++;
        }
    }
    free(in);
    free(slot);
done:
    us_tf_close(f);
    return rc;
}
