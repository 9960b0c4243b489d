/*
 * durable.h — crash-safe file writes: temp file, fsync, rename, fsync(dir).
 *
 * A us_durable_file writes to "<path>.tmp.<pid>" in the same directory and
 * only us_durable_commit() makes it visible under <path>: after fsync of the
 * data, rename() over the final name (atomic on POSIX file systems) and fsync
 * of the directory so the rename itself survives a crash. Any failure before
 * commit (including a full disk, ENOSPC, or a file size limit, EFBIG) leaves
 * <path> exactly as it was; us_durable_abort() removes the temp file.
 *
 * A process that uses RLIMIT_FSIZE must ignore SIGXFSZ (us_durable_ignore_sigxfsz)
 * so that an over-limit write fails with EFBIG instead of killing the process.
 */
#ifndef US_DURABLE_H
#define US_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/us_status.h"

typedef struct us_durable_file {
    int      fd;               /* -1 when closed */
    char    *path;             /* final name, owned */
    char    *tmp_path;         /* temp name, owned */
    uint64_t bytes_written;
    uint64_t synced_bytes;     /* write-back started up to here */
} us_durable_file;

/* Creates the temp file next to `path`. With overwrite == false an existing
 * `path` is refused with US_EEXIST before anything is created.
 * Returns: US_OK; US_EEXIST (no overwrite, path exists); US_EIO naming the temp file; US_ENOMEM.
 */
int us_durable_open(us_durable_file *f, const char *path, bool overwrite, us_err *err);

/* Appends n bytes; retries short writes and EINTR. ENOSPC/EFBIG are reported
 * as US_EIO "disk full" / "file size limit" naming the file.
 * Returns: US_OK; US_EIO naming the file (disk full, file size limit, other write errors).
 */
int us_durable_write(us_durable_file *f, const void *buf, size_t n, us_err *err);

/* Appends n zero bytes (padding to an alignment).
 * Returns: US_OK; US_EIO as us_durable_write; US_ENOMEM.
 */
int us_durable_write_zeros(us_durable_file *f, uint64_t n, us_err *err);

/* fsync, close, rename over the final name, fsync of the directory. On error
 * the temp file is removed and the final name is untouched. Frees *f's names.
 * Returns: US_OK; US_EIO naming the file for a failed fsync, close or rename.
 */
int us_durable_commit(us_durable_file *f, us_err *err);

/* Closes and removes the temp file; safe on a closed or zeroed file.
 * Returns: nothing; cannot fail.
 */
void us_durable_abort(us_durable_file *f);

/* fsync of the directory that holds `path` (a file) or of `dir` itself.
 * Returns: US_OK, or US_EIO naming the directory (both functions).
 */
int us_fsync_parent_dir(const char *path, us_err *err);
int us_fsync_dir(const char *dir, us_err *err);

/* Writes all of buf at offset (pwrite loop) / reads all of buf (pread loop).
 * A read that hits end of file returns US_ECORRUPT "truncated" naming `what`.
 * Returns: US_OK; US_EIO naming `what`; reads: US_ECORRUPT "truncated" at end of file.
 */
int us_pwrite_all(int fd, const void *buf, size_t n, uint64_t offset,
                  const char *what, us_err *err);
int us_pread_all(int fd, void *buf, size_t n, uint64_t offset,
                 const char *what, us_err *err);

/* Reads the whole file `path` into a malloc-ed buffer with a NUL after the
 * last byte (*out, *out_bytes excludes the NUL). A file larger than
 * max_bytes is refused with US_EINVAL naming `what` and the limit; a missing
 * file is US_ENOTFOUND, other failures US_EIO ("PATH: cannot open: ...").
 * Works on pipes and other files whose size stat() does not tell.
 * Returns: US_OK; US_ENOTFOUND; US_EINVAL (over max_bytes); US_EIO; US_ENOMEM.
 */
int us_read_file(const char *path, size_t max_bytes, const char *what, char **out,
                 size_t *out_bytes, us_err *err);

/* SIGXFSZ -> ignored, so RLIMIT_FSIZE gives EFBIG errors instead of a kill.
 * Returns: nothing; changes the process signal disposition (callers: main or a command).
 */
void us_durable_ignore_sigxfsz(void);

#endif
