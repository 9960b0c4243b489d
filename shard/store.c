/*
 * store.c — opening a store directory and serving its blocks (see store.h
 * for the storage contract). One us_store owns: the manifest, one
 * store_file per local (table, shard) file (its RAM copy or mapping), per
 * table the block pointer arrays handed out in us_rows_view, and per table
 * one check state per block (unchecked / good / bad), so a block's CRC is
 * computed once however many threads and requests touch it.
 */
#include "shard/store.h"

#include <errno.h>
#include <stdatomic.h>
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
    int       fd;          /* kept open while mapped (valid only then): other
                            * processes may map the same pages (proto/shmem.h) */
    uint64_t  n_blocks;
    uint64_t *block_ids;   /* [n_blocks], slot order */
} store_file;

/* Per-block check state. One byte per block rather than bits: a 1e9-row
 * table has 2.4e5 blocks of 4096 rows, 240 KiB of states, and a byte store
 * needs no read-modify-write between threads. */
enum { BLOCK_UNCHECKED = 0, BLOCK_GOOD = 1, BLOCK_BAD = 2 };

typedef struct store_table {
    const uint8_t **blocks;   /* [n_blocks] slot pointers, NULL = not local */
    const float   **scales;   /* [n_blocks] int8 only */
    _Atomic uint8_t *state;   /* [n_blocks] BLOCK_* */
    store_file     *files;
    size_t          n_files;
} store_table;

struct us_store {
    char         *dir;
    us_manifest   m;
    us_store_opts opts;
    store_table  *tables;     /* [m.n_tables] */
    bool          checked_at_open;
    /* scrub cursor: next (table, file, slot) to re-check */
    size_t        scrub_table, scrub_file;
    uint64_t      scrub_slot;
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
    if (f->mapped)
        close(f->fd);
    free(f->path);
    free(f->block_ids);
    memset(f, 0, sizeof *f);
}

/* Checks one block against the manifest CRC; message names table, block, file. */
static int check_block(const us_store *s, size_t ti, const store_file *f, uint64_t k, us_err *err)
{
    const us_table_layout *t = &s->m.tables[ti];
    uint64_t b = f->block_ids[k];
    uint32_t got = us_layout_block_crc(t, f->base + us_layout_slot_offset(t, k), b);
    uint32_t want = s->m.block_crc[ti][b];
    atomic_store_explicit(&s->tables[ti].state[b], got == want ? BLOCK_GOOD : BLOCK_BAD,
                          memory_order_release);
    if (got != want)
        return us_err_set(err, US_ECORRUPT, "table '%s' block %llu in file '%s': checksum "
                          "0x%08x, manifest says 0x%08x (corrupt block)", t->name,
                          (unsigned long long)b, f->path, got, want);
    return US_OK;
}

/* The local file and slot of block b (b must be local). */
static const store_file *block_file(const us_store *s, size_t ti, uint64_t b, uint64_t *slot)
{
    const us_table_layout *t = &s->m.tables[ti];
    const store_table *st = &s->tables[ti];
    size_t fi = 0;
    if (s->opts.shard_index == US_STORE_ALL_SHARDS)
        fi = (size_t)us_placement_shard(t->table_id, b, t->placement_seed,
                                        (int)s->m.shard_count);
    const store_file *f = &st->files[fi];
    *slot = (uint64_t)(st->blocks[b] - f->base - t->file_header_bytes) / t->block_slot_bytes;
    return f;
}

/* Size and header: a file of the wrong size is never mapped; a file whose
 * header names another store, table or shard is refused before any row
 * of it is served. */
static int check_file_size(const us_table_layout *t, const store_file *f, uint64_t have,
                           uint64_t want, us_err *err)
{
    if (have == want)
        return US_OK;
    if (have < want && have >= t->file_header_bytes) {
        uint64_t k = (have - t->file_header_bytes) / t->block_slot_bytes;
        return us_err_set(err, US_ECORRUPT, "table '%s' block %llu in file '%s': truncated "
                          "(file has %llu bytes, manifest says %llu)", t->name,
                          (unsigned long long)f->block_ids[k], f->path,
                          (unsigned long long)have, (unsigned long long)want);
    }
    return us_err_set(err, US_ECORRUPT, "table '%s' file '%s': %llu bytes, manifest says %llu",
                      t->name, f->path, (unsigned long long)have, (unsigned long long)want);
}

static int load_file(const us_store *s, const us_table_layout *t, store_file *f, int fd,
                     us_err *err)
{
    uint64_t want = f->bytes;
    if (s->opts.backend == US_BACKEND_MMAP) {
        void *p = mmap(NULL, want, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return us_err_set(err, US_EIO, "table '%s': mmap '%s' (%llu bytes): %s", t->name,
                              f->path, (unsigned long long)want, strerror(errno));
        /* rows are read at random: no readahead beyond the page */
        madvise(p, want, MADV_RANDOM);
        f->base = p;
        f->mapped = true;
    } else {
        void *p = NULL;
        if (posix_memalign(&p, US_SLOT_ALIGN, want) != 0)
            return us_err_set(err, US_ENOMEM, "table '%s': %llu bytes for '%s' in RAM",
                              t->name, (unsigned long long)want, f->path);
        f->base = p;
        int rc = us_pread_all(fd, p, want, 0, f->path, err);
        if (rc != US_OK)
            return rc;
    }
    if (t->file_header_bytes == 0)
        return US_OK;
    us_shard_header h = us_shard_header_expected(t, s->m.shard_count, f->shard);
    return us_shard_header_check(f->base, &h, f->path, err);
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
    uint64_t want = us_layout_file_bytes(t, f->n_blocks);

    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return us_err_set(err, e == ENOENT ? US_ENOTFOUND : US_EIO, "table '%s' shard %u: "
                          "open '%s': %s", t->name, shard, f->path, strerror(e));
    }
    int rc = US_OK;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = us_err_set(err, US_EIO, "table '%s': '%s' is not a regular file", t->name, f->path);
    else
        rc = check_file_size(t, f, (uint64_t)st.st_size, want, err);
    f->bytes = want;
    if (rc == US_OK && want > 0)
        rc = load_file(s, t, f, fd, err);
    if (f->mapped)
        f->fd = fd;
    else
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
    st->state = calloc(t->n_blocks, sizeof *st->state);
    uint32_t nf = s->opts.shard_index == US_STORE_ALL_SHARDS ? s->m.shard_count : 1;
    st->files = calloc(nf, sizeof *st->files);
    if (st->blocks == NULL || st->scales == NULL || st->state == NULL || st->files == NULL)
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
            const uint8_t *slot = f->base + us_layout_slot_offset(t, k);
            st->blocks[f->block_ids[k]] = slot;
            if (t->dtype == US_DTYPE_INT8)
                st->scales[f->block_ids[k]] = (const float *)(slot + t->scales_offset_bytes);
        }
    }
    return US_OK;
}

/* RAM: the bytes pass through the CPU anyway; verify: asked for; auto:
 * small local stores (see US_STORE_CHECK_OPEN_MAX_BYTES). */
static bool check_at_open(const us_store *s)
{
    if (s->opts.backend == US_BACKEND_RAM || s->opts.verify ||
        s->opts.check == US_STORE_CHECK_OPEN)
        return true;
    if (s->opts.check == US_STORE_CHECK_FIRST_USE)
        return false;
    const char *env = getenv("US_STORE_CHECK");
    if (env != NULL && strcmp(env, "open") == 0)
        return true;
    if (env != NULL && strcmp(env, "first-use") == 0)
        return false;
    return us_store_local_bytes(s) <= US_STORE_CHECK_OPEN_MAX_BYTES;
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
    if ((opts->backend != US_BACKEND_MMAP && opts->backend != US_BACKEND_RAM) ||
        opts->check < US_STORE_CHECK_AUTO || opts->check > US_STORE_CHECK_FIRST_USE) {
        rc = us_err_set(err, US_EINVAL, "store '%s': unknown backend %d or check policy %d",
                        dir, (int)opts->backend, (int)opts->check);
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
    if (check_at_open(s)) {
        for (size_t i = 0; i < s->m.n_tables && rc == US_OK; i++)
            rc = us_store_check_table(s, i, err);
        if (rc != US_OK)
            goto fail;
        s->checked_at_open = true;
    }
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
        free((void *)st->state);
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
    /* one mapped file holds every local block: coordinators on this host
     * may map it too and read rows in place (proto/transport_fabric.c) */
    if (s->opts.shard_index != US_STORE_ALL_SHARDS && st->files[0].mapped) {
        view->share_base = st->files[0].base;
        view->share_bytes = st->files[0].bytes;
        view->share_fd = st->files[0].fd;
    }
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
    int rc = us_store_check_rows(s, index, &row, 1, err);
    if (rc != US_OK)
        return rc;
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

/* Checks the given local blocks of table ti not yet known good, spread over
 * OpenMP threads (a first round may touch thousands of blocks). Every
 * block is checked even after a failure, so all bad ones are remembered;
 * *err gets the first failure. */
static int check_block_list(const us_store *s, size_t ti, const uint64_t *ids, long long n,
                            us_err *err)
{
    int first_rc = US_OK;
    #pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (long long i = 0; i < n; i++) {
        uint64_t k;
        const store_file *f = block_file(s, ti, ids[i], &k);
        us_err e;
        if (check_block(s, ti, f, k, &e) != US_OK) {
            #pragma omp critical(us_store_check)
            if (first_rc == US_OK) {
                first_rc = US_ECORRUPT;
                if (err)
                    *err = e;
            }
        }
    }
    return first_rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A block remembered bad: the message is rebuilt by checking it again
 * (rare: only requests for a bad block pay it). */
static int refuse_bad(const us_store *s, size_t ti, uint64_t b, us_err *err)
{
    uint64_t k;
    const store_file *f = block_file(s, ti, b, &k);
    if (check_block(s, ti, f, k, err) == US_OK)
        atomic_store_explicit(&s->tables[ti].state[b], BLOCK_BAD, memory_order_release);
    return us_err_set(err, US_ECORRUPT, "table '%s' block %llu in file '%s': failed its "
                      "checksum; refused", s->m.tables[ti].name, (unsigned long long)b, f->path);
}

int us_store_check_rows(const us_store *s, size_t index, const uint64_t *rows, size_t n,
                        us_err *err)
{
    if (index >= s->m.n_tables || s->m.tables[index].synthetic || s->checked_at_open)
        return US_OK;
    const us_table_layout *t = &s->m.tables[index];
    const store_table *st = &s->tables[index];
    uint64_t *pending = NULL;
    size_t n_pending = 0;
    int rc = US_OK;
    for (size_t i = 0; i < n && rc == US_OK; i++) {
        uint64_t b = rows[i] >> t->block_bits;
        if (rows[i] >= t->rows || st->blocks[b] == NULL)
            continue;           /* not ours to check: the caller refuses the row */
        uint8_t state = atomic_load_explicit(&st->state[b], memory_order_acquire);
        if (state == BLOCK_GOOD)
            continue;
        if (state == BLOCK_BAD) {
            rc = refuse_bad(s, index, b, err);
            break;
        }
        if (pending == NULL && (pending = malloc((n - i) * sizeof *pending)) == NULL)
            rc = us_err_set(err, US_ENOMEM, "table '%s': checking %zu rows", t->name, n);
        else
            pending[n_pending++] = b;
    }
    if (rc == US_OK && n_pending > 0) {
        qsort(pending, n_pending, sizeof *pending, cmp_u64);
        size_t u = 1;
        for (size_t i = 1; i < n_pending; i++)
            if (pending[i] != pending[u - 1])
                pending[u++] = pending[i];
        rc = check_block_list(s, index, pending, (long long)u, err);
    }
    free(pending);
    return rc;
}

int us_store_check_table(const us_store *s, size_t index, us_err *err)
{
    if (index >= s->m.n_tables)
        return us_err_set(err, US_ERANGE, "store '%s': table index %zu of %zu", s->dir, index,
                          s->m.n_tables);
    const us_table_layout *t = &s->m.tables[index];
    const store_table *st = &s->tables[index];
    if (t->synthetic || s->checked_at_open)
        return US_OK;
    int rc = US_OK;
    for (size_t fi = 0; fi < st->n_files && rc == US_OK; fi++) {
        const store_file *f = &st->files[fi];
        uint64_t *todo = malloc((f->n_blocks ? f->n_blocks : 1) * sizeof *todo);
        if (todo == NULL)
            return us_err_set(err, US_ENOMEM, "table '%s': checking '%s'", t->name, f->path);
        uint64_t n = 0;
        for (uint64_t k = 0; k < f->n_blocks && rc == US_OK; k++) {
            uint64_t b = f->block_ids[k];
            uint8_t state = atomic_load_explicit(&st->state[b], memory_order_acquire);
            if (state == BLOCK_BAD)
                rc = refuse_bad(s, index, b, err);
            else if (state == BLOCK_UNCHECKED)
                todo[n++] = b;
        }
        if (rc == US_OK)
            rc = check_block_list(s, index, todo, (long long)n, err);
        free(todo);
    }
    return rc;
}

/* Advances the scrub cursor to the next local slot; false after the last
 * one (the cursor then wraps to the start). */
static bool scrub_next(us_store *s, size_t *ti, const store_file **f, uint64_t *k)
{
    while (s->scrub_table < s->m.n_tables) {
        const store_table *st = &s->tables[s->scrub_table];
        if (!s->m.tables[s->scrub_table].synthetic && s->scrub_file < st->n_files) {
            const store_file *sf = &st->files[s->scrub_file];
            if (s->scrub_slot < sf->n_blocks) {
                *ti = s->scrub_table;
                *f = sf;
                *k = s->scrub_slot++;
                return true;
            }
            s->scrub_file++;
            s->scrub_slot = 0;
            continue;
        }
        s->scrub_table++;
        s->scrub_file = 0;
        s->scrub_slot = 0;
    }
    s->scrub_table = s->scrub_file = 0;
    s->scrub_slot = 0;
    return false;
}

int us_store_scrub_step(us_store *s, uint64_t max_bytes, us_scrub_report *report, us_err *err)
{
    us_scrub_report rep = {0};
    int rc = US_OK;
    size_t ti;
    const store_file *f;
    uint64_t k;
    while (rep.bytes_checked < max_bytes && scrub_next(s, &ti, &f, &k)) {
        const us_table_layout *t = &s->m.tables[ti];
        us_err e;
        /* a block found bad is refused already and was reported once */
        if (atomic_load_explicit(&s->tables[ti].state[f->block_ids[k]],
                                 memory_order_acquire) == BLOCK_BAD)
            continue;
        rep.blocks_checked++;
        rep.bytes_checked += t->block_slot_bytes;
        if (check_block(s, ti, f, k, &e) == US_OK)
            continue;
        rep.blocks_bad++;
        /* the store keeps serving good blocks; the bad one is refused on use */
        s->checked_at_open = false;
        fprintf(stderr, "ultrashard: scrub: %s; refused from now on\n", e.msg);
        fflush(stderr);
        if (rc == US_OK) {
            rc = US_ECORRUPT;
            if (err)
                *err = e;
        }
    }
    rep.wrapped = s->scrub_table == 0 && s->scrub_file == 0 && s->scrub_slot == 0;
    if (report)
        *report = rep;
    return rc;
}
