/* durable.c — temp + fsync + rename + fsync(dir) writes (see durable.h). */
#include "shard/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int io_error(us_err *err, int e, const char *op, const char *path)
{
    if (e == ENOSPC)
        return us_err_set(err, US_EIO, "%s '%s': disk full (ENOSPC)", op, path);
    if (e == EFBIG)
        return us_err_set(err, US_EIO, "%s '%s': file size limit reached (EFBIG)", op, path);
    return us_err_set(err, US_EIO, "%s '%s': %s", op, path, strerror(e));
}

int us_durable_open(us_durable_file *f, const char *path, bool overwrite, us_err *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    struct stat st;
    if (!overwrite && stat(path, &st) == 0)
        return us_err_set(err, US_EEXIST, "'%s' already exists; refusing to overwrite", path);
    size_t len = strlen(path) + 32;
    f->path = strdup(path);
    f->tmp_path = malloc(len);
    if (f->path == NULL || f->tmp_path == NULL) {
        us_durable_abort(f);
        return us_err_set(err, US_ENOMEM, "durable write of '%s': out of memory", path);
    }
    snprintf(f->tmp_path, len, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        int rc = io_error(err, e, "create", f->tmp_path);
        free(f->path);
        free(f->tmp_path);
        f->path = f->tmp_path = NULL;
        return rc;
    }
    return US_OK;
}

int us_durable_write(us_durable_file *f, const void *buf, size_t n, us_err *err)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return io_error(err, errno, "write", f->tmp_path);
        }
        if (w == 0)
            return io_error(err, ENOSPC, "write", f->tmp_path);
        p += w;
        n -= (size_t)w;
        f->bytes_written += (uint64_t)w;
    }
    /* start write-back of each full 8 MiB window now (asynchronously), so the
     * fsync at commit does not find the whole file dirty at once */
    uint64_t window = 8ull << 20, done = f->bytes_written / window * window;
    if (done > f->synced_bytes) {
        sync_file_range(f->fd, (off_t)f->synced_bytes, (off_t)(done - f->synced_bytes),
                        SYNC_FILE_RANGE_WRITE);
        f->synced_bytes = done;
    }
    return US_OK;
}

int us_durable_write_zeros(us_durable_file *f, uint64_t n, us_err *err)
{
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = us_durable_write(f, zeros, chunk, err);
        if (rc != US_OK)
            return rc;
        n -= chunk;
    }
    return US_OK;
}

int us_fsync_dir(const char *dir, us_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error(err, errno, "open directory", dir);
    int rc = US_OK;
    if (fsync(fd) != 0 && errno != EINVAL)   /* some file systems refuse dir fsync */
        rc = io_error(err, errno, "fsync directory", dir);
    close(fd);
    return rc;
}

int us_fsync_parent_dir(const char *path, us_err *err)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return us_err_set(err, US_ENOMEM, "fsync parent of '%s': out of memory", path);
    int rc = us_fsync_dir(dirname(copy), err);
    free(copy);
    return rc;
}

int us_durable_commit(us_durable_file *f, us_err *err)
{
    int rc = US_OK;
    if (fsync(f->fd) != 0) {
        rc = io_error(err, errno, "fsync", f->tmp_path);
        goto fail;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        rc = io_error(err, errno, "close", f->tmp_path);
        goto fail;
    }
    if (rename(f->tmp_path, f->path) != 0) {
        rc = io_error(err, errno, "rename to", f->path);
        goto fail;
    }
    rc = us_fsync_parent_dir(f->path, err);
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    return rc;
fail:
    us_durable_abort(f);
    return rc;
}

void us_durable_abort(us_durable_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp_path != NULL)
        unlink(f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
}

int us_pwrite_all(int fd, const void *buf, size_t n, uint64_t offset,
                  const char *what, us_err *err)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)offset);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return io_error(err, errno, "write", what);
        }
        if (w == 0)
            return io_error(err, ENOSPC, "write", what);
        p += w;
        n -= (size_t)w;
        offset += (uint64_t)w;
    }
    return US_OK;
}

int us_pread_all(int fd, void *buf, size_t n, uint64_t offset,
                 const char *what, us_err *err)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)offset);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return io_error(err, errno, "read", what);
        }
        if (r == 0)
            return us_err_set(err, US_ECORRUPT, "'%s' is truncated: end of file at byte %llu",
                              what, (unsigned long long)offset);
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return US_OK;
}

void us_durable_ignore_sigxfsz(void)
{
    signal(SIGXFSZ, SIG_IGN);
}

int us_read_file(const char *path, size_t max_bytes, const char *what, char **out,
                 size_t *out_bytes, us_err *err)
{
    *out = NULL;
    *out_bytes = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return us_err_set(err, errno == ENOENT ? US_ENOTFOUND : US_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = US_OK;
    for (;;) {
        if (len + 1 >= cap) {   /* room for at least one byte and the NUL */
            if (len > max_bytes) {
                rc = us_err_set(err, US_EINVAL, "%s: %s larger than %zu bytes", path, what,
                                max_bytes);
                goto fail;
            }
            size_t grown = cap ? 2 * cap : 1 << 16;
            char *nb = realloc(buf, grown);
            if (nb == NULL) {
                rc = us_err_set(err, US_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
            cap = grown;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = us_err_set(err, US_EIO, "%s: read error", path);
        goto fail;
    }
    if (len > max_bytes) {
        rc = us_err_set(err, US_EINVAL, "%s: %s larger than %zu bytes", path, what, max_bytes);
        goto fail;
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    *out_bytes = len;
    return US_OK;
fail:
    free(buf);
    fclose(f);
    return rc;
}
