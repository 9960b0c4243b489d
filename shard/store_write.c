/* store_write.c — staged store directories and crash-safe shard files (see store_write.h). */
#include "shard/store_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard/durable.h"

int us_shard_file_write(const char *dir, const us_table_layout *t, uint32_t shard_count,
                        uint32_t shard, us_block_fill_fn fill, void *ctx,
                        uint32_t *block_crc, uint64_t *bytes_out, us_err *err)
{
    char name[64], path[4096];
    us_shard_file_name(name, sizeof name, t->table_id, shard);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint64_t n = us_layout_shard_blocks(t, shard_count, shard, NULL);
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    void *slot = NULL;
    if (ids == NULL || posix_memalign(&slot, US_SLOT_ALIGN, t->block_slot_bytes) != 0) {
        free(ids);
        return us_err_set(err, US_ENOMEM, "table '%s' shard %u: out of memory", t->name, shard);
    }
    us_layout_shard_blocks(t, shard_count, shard, ids);
    us_durable_file f;
    int rc = us_durable_open(&f, path, false, err);
    if (rc == US_OK && t->file_header_bytes > 0) {
        us_shard_header h = us_shard_header_expected(t, shard_count, shard);
        us_shard_header_encode(slot, &h);
        rc = us_durable_write(&f, slot, US_SHARD_HEADER_BYTES, err);
    }
    for (uint64_t k = 0; k < n && rc == US_OK; k++) {
        if ((rc = fill(ctx, t, ids[k], slot, err)) != US_OK)
            break;
        /* padding is zero on disk: clear what the rows did not cover (a full
         * memset of every slot would be one more pass over all the data) */
        uint64_t rows = us_layout_block_rows(t, ids[k]);
        uint8_t *s8 = slot;
        if (t->dtype == US_DTYPE_INT8) {
            memset(s8 + rows * t->row_bytes, 0, t->scales_offset_bytes - rows * t->row_bytes);
            memset(s8 + t->scales_offset_bytes + rows * 4, 0,
                   t->block_slot_bytes - t->scales_offset_bytes - rows * 4);
        } else {
            memset(s8 + rows * t->row_bytes, 0, t->block_slot_bytes - rows * t->row_bytes);
        }
        block_crc[ids[k]] = us_layout_block_crc(t, slot, ids[k]);
        rc = us_durable_write(&f, slot, t->block_slot_bytes, err);
    }
    if (rc == US_OK)
        rc = us_durable_commit(&f, err);
    else if (f.tmp_path != NULL || f.fd >= 0)
        us_durable_abort(&f);
    if (rc == US_OK && bytes_out)
        *bytes_out = us_layout_file_bytes(t, n);
    free(slot);
    free(ids);
    if (rc != US_OK)
        return us_err_prefix(err, "table '%s' shard %u", t->name, shard);
    return US_OK;
}

#define PLAN_FILE "import.plan"

/* A resumed file was written by the crashed run, whose manifest (and so
 * store id) never became durable: stamp this run's identity into it. */
static int resume_header(int fd, const us_table_layout *t, uint32_t shard_count,
                         uint32_t shard, const char *path, us_err *err)
{
    if (t->file_header_bytes == 0)
        return US_OK;
    uint8_t buf[US_SHARD_HEADER_BYTES];
    us_shard_header h = us_shard_header_expected(t, shard_count, shard);
    us_shard_header_encode(buf, &h);
    if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || fsync(fd) != 0)
        return us_err_set(err, US_EIO, "rewriting the header of '%s': %s", path,
                          strerror(errno));
    return US_OK;
}

int us_shard_file_resume(const char *dir, const us_table_layout *t, uint32_t shard_count,
                         uint32_t shard, uint32_t *block_crc, uint64_t *bytes_out,
                         us_err *err)
{
    char name[64], path[4096];
    us_shard_file_name(name, sizeof name, t->table_id, shard);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint64_t n = us_layout_shard_blocks(t, shard_count, shard, NULL);
    struct stat st;
    if (stat(path, &st) != 0)
        return us_err_set(err, US_ENOTFOUND, "'%s' not written yet", path);
    if ((uint64_t)st.st_size != us_layout_file_bytes(t, n)) {
        unlink(path);
        return us_err_set(err, US_ENOTFOUND, "'%s' has the wrong size; rewriting", path);
    }
    /* read-write: the header is rewritten below (see resume_header) */
    int fd = open(path, O_RDWR | O_CLOEXEC);
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    void *slot = NULL;
    int rc = US_OK;
    if (fd < 0)
        rc = us_err_set(err, US_EIO, "open '%s': %s", path, strerror(errno));
    else if (ids == NULL || posix_memalign(&slot, US_SLOT_ALIGN, t->block_slot_bytes) != 0)
        rc = us_err_set(err, US_ENOMEM, "table '%s' shard %u: out of memory", t->name, shard);
    if (rc == US_OK)
        us_layout_shard_blocks(t, shard_count, shard, ids);
    for (uint64_t k = 0; k < n && rc == US_OK; k++) {
        rc = us_pread_all(fd, slot, t->block_slot_bytes, us_layout_slot_offset(t, k), path,
                          err);
        if (rc == US_OK)
            block_crc[ids[k]] = us_layout_block_crc(t, slot, ids[k]);
    }
    if (rc == US_OK)
        rc = resume_header(fd, t, shard_count, shard, path, err);
    if (fd >= 0)
        close(fd);
    free(slot);
    free(ids);
    if (rc == US_OK && bytes_out)
        *bytes_out = us_layout_file_bytes(t, n);
    return rc;
}

/* Whole-file read of a small text file; NULL if absent or unreadable. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = cap * 2 + 8192);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 4096, f);
        len += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static void remove_temp_files(const char *stage)
{
    DIR *d = opendir(stage);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.") != NULL) {
            snprintf(path, sizeof path, "%s/%s", stage, e->d_name);
            unlink(path);
        }
    closedir(d);
}

int us_stage_begin_plan(const char *dir, const char *plan, char *stage_out, size_t cap,
                        bool *resumed, us_err *err)
{
    *resumed = false;
    struct stat st;
    if (stat(dir, &st) == 0)
        return us_err_set(err, US_EEXIST, "'%s' already exists; a store is never overwritten "
                          "(choose a new directory or remove it)", dir);
    if ((size_t)snprintf(stage_out, cap, "%s.partial", dir) >= cap)
        return us_err_set(err, US_EINVAL, "store path '%s' is too long", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", stage_out, PLAN_FILE);
    if (stat(stage_out, &st) == 0) {
        char *old = read_text(path);
        bool same = old != NULL && strcmp(old, plan) == 0;
        free(old);
        if (same) {
            remove_temp_files(stage_out);   /* writes the crash interrupted */
            *resumed = true;
            return US_OK;
        }
        us_stage_abort(stage_out);          /* another plan, or no plan: start over */
    }
    if (mkdir(stage_out, 0755) != 0)
        return us_err_set(err, US_EIO, "mkdir '%s': %s", stage_out, strerror(errno));
    us_durable_file f;
    int rc = us_durable_open(&f, path, true, err);
    if (rc == US_OK && (rc = us_durable_write(&f, plan, strlen(plan), err)) != US_OK)
        us_durable_abort(&f);
    else if (rc == US_OK)
        rc = us_durable_commit(&f, err);
    if (rc != US_OK)
        us_stage_abort(stage_out);
    return rc;
}

int us_stage_begin(const char *dir, char *stage_out, size_t cap, us_err *err)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return us_err_set(err, US_EEXIST, "'%s' already exists; a store is never overwritten "
                          "(choose a new directory or remove it)", dir);
    if ((size_t)snprintf(stage_out, cap, "%s.partial", dir) >= cap)
        return us_err_set(err, US_EINVAL, "store path '%s' is too long", dir);
    if (stat(stage_out, &st) == 0)
        us_stage_abort(stage_out);          /* left over by a crashed run */
    if (mkdir(stage_out, 0755) != 0)
        return us_err_set(err, US_EIO, "mkdir '%s': %s", stage_out, strerror(errno));
    return US_OK;
}

int us_stage_commit(const char *stage, const char *dir, us_err *err)
{
    char plan[4096];
    snprintf(plan, sizeof plan, "%s/%s", stage, PLAN_FILE);
    unlink(plan);                       /* a store carries no import plan */
    int rc = us_fsync_dir(stage, err);
    if (rc != US_OK)
        return rc;
    struct stat st;
    if (stat(dir, &st) == 0)
        return us_err_set(err, US_EEXIST, "'%s' appeared while the store was built; the new "
                          "store stays in '%s'", dir, stage);
    if (rename(stage, dir) != 0)
        return us_err_set(err, US_EIO, "rename '%s' to '%s': %s", stage, dir, strerror(errno));
    return us_fsync_parent_dir(dir, err);
}

/* Names a store writes: the manifest, shard files, and their temp files
 * ("table-0.shard-1.bin.tmp.PID" also matches the pattern). */
static bool store_file_name(const char *n)
{
    unsigned a, b;
    char tail[8];
    return strcmp(n, "manifest.pb") == 0 || strncmp(n, "manifest.pb.tmp.", 16) == 0 ||
           strcmp(n, PLAN_FILE) == 0 || strncmp(n, PLAN_FILE ".tmp.", 16) == 0 ||
           sscanf(n, "table-%u.shard-%u.bi%1s", &a, &b, tail) == 3;
}

void us_stage_abort(const char *stage)
{
    DIR *d = opendir(stage);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (!store_file_name(e->d_name))
            continue;       /* never delete what we did not write */
        snprintf(path, sizeof path, "%s/%s", stage, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(stage);           /* fails (harmlessly) if foreign files remain */
}
