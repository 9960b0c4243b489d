/*
 * store.c — opening a store directory and serving its blocks (see store.h
 * for the storage contract). One us_store owns: the manifest, one
 * store_file per local (table, shard) file (its RAM copy or mapping), and
 * per table the block pointer arrays handed out in us_rows_view.
 */
#include "shard/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/placement.h"
#include "shard/durable.h"
#include "shard/synthetic.h"

typedef struct store_file {
    uint32_t  shard;
    char     *path;
    uint8_t  *base;        /* RAM copy or mapping; NULL for an empty file */
    uint64_t  bytes;
    bool      mapped;
    uint64_t  n_blocks;
    uint64_t *block_ids;   /* [n_blocks], slot order */
} store_file;

typedef struct store_table {
    const uint8_t **blocks;   /* [n_blocks] slot pointers, NULL = not local */
    const float   **scales;   /* [n_blocks] int8 only */
    store_file     *files;
    size_t          n_files;
} store_table;

struct us_store {
    char         *dir;
    us_manifest   m;
    us_store_opts opts;
    store_table  *tables;     /* [m.n_tables] */
};

static bool shard_is_local(const us_store *s, uint32_t shard)
{
    return s->opts.shard_index == US_STORE_ALL_SHARDS || (uint32_t)s->opts.shard_index == shard;
}

static void file_release(store_file *f)
{
    if (f->base != NULL) {
        if (f->mapped)
            munmap(f->base, f->bytes);
        else
            free(f->base);
    }
    free(f->path);
    free(f->block_ids);
    memset(f, 0, sizeof *f);
}

/* Checks one block against the manifest CRC; message names table, block, file. */
static int check_block(const us_store *s, size_t ti, const store_file *f, uint64_t k, us_err *err)
{
    const us_table_layout *t = &s->m.tables[ti];
    uint64_t b = f->block_ids[k];
    uint32_t got = us_layout_block_crc(t, f->base + k * t->block_slot_bytes, b);
    uint32_t want = s->m.block_crc[ti][b];
    if (got != want)
        return us_err_set(err, US_ECORRUPT, "table '%s' block %llu in file '%s': checksum "
                          "0x%08x, manifest says 0x%08x (corrupt block)", t->name,
                          (unsigned long long)b, f->path, got, want);
    return US_OK;
}

static int open_file(us_store *s, size_t ti, uint32_t shard, store_file *f, us_err *err)
{
    const us_table_layout *t = &s->m.tables[ti];
    char name[64];
    us_shard_file_name(name, sizeof name, t->table_id, shard);
    size_t plen = strlen(s->dir) + strlen(name) + 2;
    f->shard = shard;
    f->path = malloc(plen);
    f->n_blocks = us_layout_shard_blocks(t, s->m.shard_count, shard, NULL);
    f->block_ids = malloc((f->n_blocks ? f->n_blocks : 1) * sizeof(uint64_t));
    if (f->path == NULL || f->block_ids == NULL)
        return us_err_set(err, US_ENOMEM, "table '%s': out of memory", t->name);
    snprintf(f->path, plen, "%s/%s", s->dir, name);
    us_layout_shard_blocks(t, s->m.shard_count, shard, f->block_ids);
    uint64_t want = f->n_blocks * t->block_slot_bytes;

    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return us_err_set(err, e == ENOENT ? US_ENOTFOUND : US_EIO, "table '%s' shard %u: "
                          "open '%s': %s", t->name, shard, f->path, strerror(e));
    }
    int rc = US_OK;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = us_err_set(err, US_EIO, "table '%s': '%s' is not a regular file", t->name, f->path);
        goto done;
    }
    if ((uint64_t)st.st_size != want) {
        uint64_t have = (uint64_t)st.st_size;
        if (have < want) {
            uint64_t k = have / t->block_slot_bytes;
            rc = us_err_set(err, US_ECORRUPT, "table '%s' block %llu in file '%s': truncated "
                            "(file has %llu bytes, manifest says %llu)", t->name,
                            (unsigned long long)f->block_ids[k], f->path,
                            (unsigned long long)have, (unsigned long long)want);
        } else {
            rc = us_err_set(err, US_ECORRUPT, "table '%s' file '%s': %llu bytes, manifest "
                            "says %llu", t->name, f->path, (unsigned long long)have,
                            (unsigned long long)want);
        }
        goto done;
    }
    f->bytes = want;
    if (want == 0)
        goto done;
    if (s->opts.backend == US_BACKEND_MMAP) {
        void *p = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            rc = us_err_set(err, US_EIO, "table '%s': mmap '%s' (%llu bytes): %s", t->name,
                            f->path, (unsigned long long)want, strerror(errno));
            goto done;
        }
        /* rows are read at random: no readahead beyond the page */
        madvise(p, want, MADV_RANDOM);
        f->base = p;
        f->mapped = true;
    } else {
        void *p = NULL;
        if (posix_memalign(&p, US_SLOT_ALIGN, want) != 0) {
            rc = us_err_set(err, US_ENOMEM, "table '%s': %llu bytes for '%s' in RAM", t->name,
                            (unsigned long long)want, f->path);
            goto done;
        }
        f->base = p;
        if ((rc = us_pread_all(fd, p, want, 0, f->path, err)) != US_OK)
            goto done;
    }
    /* RAM: the bytes just passed through the CPU, check them; MMAP: on request */
    if (s->opts.backend == US_BACKEND_RAM || s->opts.verify)
        for (uint64_t k = 0; k < f->n_blocks && rc == US_OK; k++)
            rc = check_block(s, ti, f, k, err);
done:
    close(fd);
    return rc;
}

static int open_table(us_store *s, size_t ti, us_err *err)
{
    const us_table_layout *t = &s->m.tables[ti];
    store_table *st = &s->tables[ti];
    if (t->synthetic)
        return US_OK;
    st->blocks = calloc(t->n_blocks, sizeof *st->blocks);
    st->scales = calloc(t->n_blocks, sizeof *st->scales);
    uint32_t nf = s->opts.shard_index == US_STORE_ALL_SHARDS ? s->m.shard_count : 1;
    st->files = calloc(nf, sizeof *st->files);
    if (st->blocks == NULL || st->scales == NULL || st->files == NULL)
        return us_err_set(err, US_ENOMEM, "table '%s': out of memory for %llu blocks",
                          t->name, (unsigned long long)t->n_blocks);
    for (uint32_t shard = 0; shard < s->m.shard_count; shard++) {
        if (!shard_is_local(s, shard))
            continue;
        store_file *f = &st->files[st->n_files++];
        int rc = open_file(s, ti, shard, f, err);
        if (rc != US_OK)
            return rc;
        for (uint64_t k = 0; k < f->n_blocks; k++) {
            const uint8_t *slot = f->base + k * t->block_slot_bytes;
            st->blocks[f->block_ids[k]] = slot;
            if (t->dtype == US_DTYPE_INT8)
                st->scales[f->block_ids[k]] = (const float *)(slot + t->scales_offset_bytes);
        }
    }
    return US_OK;
}

int us_store_open(const char *dir, const us_store_opts *opts, us_store **out, us_err *err)
{
    *out = NULL;
    us_store *s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        return us_err_set(err, US_ENOMEM, "open store '%s': out of memory", dir);
    }
    s->opts = *opts;
    int rc = us_manifest_read(dir, &s->m, err);
    if (rc != US_OK) {
        free(s->dir);
        free(s);
        return rc;
    }
    if (opts->backend != US_BACKEND_MMAP && opts->backend != US_BACKEND_RAM) {
        rc = us_err_set(err, US_EINVAL, "store '%s': unknown backend %d", dir, (int)opts->backend);
        goto fail;
    }
    if (opts->expect_shards > 0 && (uint32_t)opts->expect_shards != s->m.shard_count) {
        rc = us_err_set(err, US_EINVAL, "store '%s' has %u shards but this job has %d shard "
                        "ranks (shard count mismatch; reshard the store or change -n)", dir,
                        s->m.shard_count, opts->expect_shards);
        goto fail;
    }
    if (opts->shard_index != US_STORE_ALL_SHARDS &&
        (opts->shard_index < 0 || (uint32_t)opts->shard_index >= s->m.shard_count)) {
        rc = us_err_set(err, US_EINVAL, "store '%s': shard %d outside [0, %u)", dir,
                        opts->shard_index, s->m.shard_count);
        goto fail;
    }
    s->tables = calloc(s->m.n_tables ? s->m.n_tables : 1, sizeof *s->tables);
    if (s->tables == NULL) {
        rc = us_err_set(err, US_ENOMEM, "open store '%s': out of memory", dir);
        goto fail;
    }
    for (size_t i = 0; i < s->m.n_tables; i++)
        if ((rc = open_table(s, i, err)) != US_OK)
            goto fail;
    *out = s;
    return US_OK;
fail:
    us_store_close(s);
    return rc;
}

void us_store_close(us_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->tables != NULL && i < s->m.n_tables; i++) {
        store_table *st = &s->tables[i];
        for (size_t k = 0; k < st->n_files; k++)
            file_release(&st->files[k]);
        free(st->files);
        free(st->blocks);
        free(st->scales);
    }
    free(s->tables);
    us_manifest_free(&s->m);
    free(s->dir);
    free(s);
}

const us_manifest *us_store_manifest(const us_store *s) { return &s->m; }
const char *us_store_dir(const us_store *s) { return s->dir; }

int us_store_find_table(const us_store *s, const char *name, size_t *index, us_err *err)
{
    int i = us_manifest_find(&s->m, name);
    if (i < 0)
        return us_err_set(err, US_ENOTFOUND, "store '%s' has no table '%s'", s->dir, name);
    *index = (size_t)i;
    return US_OK;
}

int us_store_view(const us_store *s, size_t index, us_rows_view *view, us_err *err)
{
    if (index >= s->m.n_tables)
        return us_err_set(err, US_ERANGE, "store '%s': table index %zu of %zu", s->dir, index,
                          s->m.n_tables);
    const us_table_layout *t = &s->m.tables[index];
    if (t->synthetic)
        return us_err_set(err, US_EUNSUPP, "table '%s' is synthetic: no stored rows to view "
                          "(use us_store_read_row or synthetic.h)", t->name);
    const store_table *st = &s->tables[index];
    *view = (us_rows_view){
        .dtype = t->dtype, .dim = t->dim, .block_bits = t->block_bits,
        .row_stride_bytes = t->row_bytes, .rows = t->rows, .n_blocks = t->n_blocks,
        .blocks = st->blocks,
        .block_scales = t->dtype == US_DTYPE_INT8 ? st->scales : NULL,
    };
    return US_OK;
}

bool us_store_has_row(const us_store *s, size_t index, uint64_t row)
{
    if (index >= s->m.n_tables || row >= s->m.tables[index].rows)
        return false;
    const us_table_layout *t = &s->m.tables[index];
    uint64_t b = row >> t->block_bits;
    if (t->synthetic)
        return shard_is_local(s, (uint32_t)us_placement_shard(t->table_id, b, t->placement_seed,
                                                              (int)s->m.shard_count));
    return s->tables[index].blocks[b] != NULL;
}

const uint8_t *us_store_block(const us_store *s, size_t index, uint64_t block)
{
    if (index >= s->m.n_tables || s->m.tables[index].synthetic ||
        block >= s->m.tables[index].n_blocks)
        return NULL;
    return s->tables[index].blocks[block];
}

int us_store_read_row(const us_store *s, size_t index, uint64_t row, void *out, float *scale,
                      us_err *err)
{
    if (index >= s->m.n_tables)
        return us_err_set(err, US_ERANGE, "store '%s': table index %zu of %zu", s->dir, index,
                          s->m.n_tables);
    const us_table_layout *t = &s->m.tables[index];
    if (row >= t->rows)
        return us_err_set(err, US_ERANGE, "table '%s': row %llu outside [0, %llu)", t->name,
                          (unsigned long long)row, (unsigned long long)t->rows);
    if (!us_store_has_row(s, index, row))
        return us_err_set(err, US_ENOTFOUND, "table '%s': row %llu (block %llu) is not held "
                          "by this shard", t->name, (unsigned long long)row,
                          (unsigned long long)(row >> t->block_bits));
    if (t->synthetic) {
        float dummy;
        return us_synth_row(out, scale ? scale : &dummy, t->dtype, t->synthetic_seed,
                            t->table_id, row, t->dim, err);
    }
    const uint8_t *slot = s->tables[index].blocks[row >> t->block_bits];
    uint64_t r = row & (t->rows_per_block - 1);
    memcpy(out, slot + r * t->row_bytes, t->row_bytes);
    if (t->dtype == US_DTYPE_INT8 && scale != NULL)
        memcpy(scale, slot + t->scales_offset_bytes + 4 * r, 4);
    return US_OK;
}

int us_store_verify(const us_store *s, bool print_each, us_verify_report *report, us_err *err)
{
    us_verify_report rep = {0};
    int first_rc = US_OK;
    for (size_t ti = 0; ti < s->m.n_tables; ti++) {
        const us_table_layout *t = &s->m.tables[ti];
        const store_table *st = &s->tables[ti];
        for (size_t fi = 0; fi < st->n_files; fi++) {
            const store_file *f = &st->files[fi];
            long long n = (long long)f->n_blocks;
            uint64_t bad = 0;
            /* blocks are independent: spread them over OpenMP threads */
            #pragma omp parallel for schedule(dynamic, 4) reduction(+:bad)
            for (long long k = 0; k < n; k++) {
                us_err e;
                if (check_block(s, ti, f, (uint64_t)k, &e) != US_OK) {
                    bad++;
                    #pragma omp critical
                    {
                        if (print_each)
                            fprintf(stderr, "verify: %s\n", e.msg);
                        if (first_rc == US_OK) {
                            first_rc = US_ECORRUPT;
                            if (err)
                                *err = e;
                        }
                    }
                }
            }
            rep.blocks_checked += f->n_blocks;
            rep.blocks_bad += bad;
            for (uint64_t k = 0; k < f->n_blocks; k++)
                rep.bytes_checked += us_layout_block_rows(t, f->block_ids[k]) *
                                     (t->row_bytes + (t->dtype == US_DTYPE_INT8 ? 4 : 0));
        }
    }
    if (report)
        *report = rep;
    return first_rc;
}

uint64_t us_store_local_bytes(const us_store *s)
{
    uint64_t total = 0;
    for (size_t ti = 0; ti < s->m.n_tables; ti++)
        for (size_t fi = 0; fi < s->tables[ti].n_files; fi++)
            total += s->tables[ti].files[fi].bytes;
    return total;
}
