/* journal.c — crash-safe inference journal and ordered output: see journal.h. */
#include "coordinator/infer/journal.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard/durable.h"

#define JOURNAL_MAGIC "ultrashard_journal"

static int read_all(const char *path, char **out, size_t *len, us_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return us_err_set(err, errno == ENOENT ? US_ENOTFOUND : US_EIO, "%s: cannot open: %s",
                          path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return us_err_set(err, US_EIO, "%s: stat: %s", path, strerror(errno));
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return us_err_set(err, US_ENOMEM, "%s: out of memory", path);
    }
    int rc = st.st_size ? us_pread_all(fd, buf, (size_t)st.st_size, 0, path, err) : US_OK;
    close(fd);
    if (rc != US_OK) {
        free(buf);
        return rc;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    *len = (size_t)st.st_size;
    return US_OK;
}

static int write_fsync(int fd, const char *what, const void *buf, size_t n, us_err *err)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return us_err_set(err, US_EIO, "%s: write: %s", what, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) != 0)
        return us_err_set(err, US_EIO, "%s: fsync: %s", what, strerror(errno));
    return US_OK;
}

static int header_text(char *out, size_t cap, uint64_t fingerprint, size_t n)
{
    return snprintf(out, cap, "{\"" JOURNAL_MAGIC "\":1,\"fingerprint\":\"%016" PRIx64
                    "\",\"sequences\":%zu}\n", fingerprint, n);
}

/* Parses the records after the header; cuts a torn last record. */
static int load_records(us_journal *j, const us_prompt_set *set, char *buf, size_t len,
                        size_t body, us_err *err)
{
    size_t lineno = 1, pos = body;
    while (pos < len) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        lineno++;
        if (nl == NULL) {   /* torn: killed while appending this record */
            if (ftruncate(j->journal_fd, (off_t)pos) != 0 || fsync(j->journal_fd) != 0)
                return us_err_set(err, US_EIO, "%s: cannot cut torn record: %s",
                                  j->journal_path, strerror(errno));
            break;
        }
        *nl = '\0';
        cJSON *rec = cJSON_Parse(buf + pos);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
        long idx = cJSON_IsString(id) ? us_prompts_find(set, id->valuestring) : -1;
        cJSON_Delete(rec);
        if (idx < 0)
            return us_err_set(err, US_ECORRUPT, "%s:%zu: record does not parse or names an id "
                              "that is not in the input", j->journal_path, lineno);
        if (!j->done[idx]) {
            size_t n = (size_t)(nl - (buf + pos));
            /* n + 2: the commit appends the newline in place. */
            if ((j->lines[idx] = malloc(n + 2)) == NULL)
                return us_err_set(err, US_ENOMEM, "%s: out of memory", j->journal_path);
            memcpy(j->lines[idx], buf + pos, n + 1);
            j->done[idx] = 1;
            j->n_done++;
        }
        pos = (size_t)(nl - buf) + 1;
    }
    return US_OK;
}

/* OUT := finished prefix lines, atomically; then open it for appending. */
static int rebuild_output(us_journal *j, us_err *err)
{
    us_durable_file f;
    int rc = us_durable_open(&f, j->out_path, true, err);
    if (rc != US_OK)
        return rc;
    j->next_commit = 0;
    while (j->next_commit < j->n && j->done[j->next_commit]) {
        char *line = j->lines[j->next_commit];
        if ((rc = us_durable_write(&f, line, strlen(line), err)) != US_OK ||
            (rc = us_durable_write(&f, "\n", 1, err)) != US_OK) {
            us_durable_abort(&f);
            return rc;
        }
        j->next_commit++;
    }
    if ((rc = us_durable_commit(&f, err)) != US_OK)
        return rc;
    for (size_t i = 0; i < j->next_commit; i++) {   /* committed: text no longer needed */
        free(j->lines[i]);
        j->lines[i] = NULL;
    }
    j->out_fd = open(j->out_path, O_WRONLY | O_APPEND);
    if (j->out_fd < 0)
        return us_err_set(err, US_EIO, "%s: cannot open for append: %s", j->out_path,
                          strerror(errno));
    return US_OK;
}

/* One job per output: an exclusive lock on OUT.lock, held until close (the
 * kernel drops it when the process dies, kill -9 included). A lock file of
 * its own, because the journal itself may be replaced by rename. */
static int lock_output(us_journal *j, const char *out_path, us_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s.lock", out_path) >= (int)sizeof path)
        return us_err_set(err, US_EINVAL, "%s: path too long", out_path);
    j->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->lock_fd < 0)
        return us_err_set(err, US_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return us_err_set(err, errno == EWOULDBLOCK ? US_EEXIST : US_EIO,
                          "%s: another infer job is writing this output (%s is locked)",
                          out_path, path);
    return US_OK;
}

int us_journal_open(us_journal *j, const char *out_path, const us_prompt_set *set,
                    uint64_t fingerprint, us_err *err)
{
    memset(j, 0, sizeof *j);
    j->journal_fd = j->out_fd = j->lock_fd = -1;
    int lrc = lock_output(j, out_path, err);
    if (lrc != US_OK) {
        us_journal_close(j);
        return lrc;
    }
    j->out_path = (char *)out_path;
    j->n = set->count;
    size_t plen = strlen(out_path) + sizeof ".journal";
    j->journal_path = malloc(plen);
    j->lines = calloc(set->count ? set->count : 1, sizeof *j->lines);
    j->done = calloc(set->count ? set->count : 1, 1);
    if (j->journal_path == NULL || j->lines == NULL || j->done == NULL) {
        us_journal_close(j);
        return us_err_set(err, US_ENOMEM, "%s: out of memory", out_path);
    }
    snprintf(j->journal_path, plen, "%s.journal", out_path);
    char header[160];
    header_text(header, sizeof header, fingerprint, set->count);
    char *buf = NULL;
    size_t len = 0;
    int rc = read_all(j->journal_path, &buf, &len, err);
    char *nl = rc == US_OK ? memchr(buf, '\n', len) : NULL;
    if (rc == US_OK && nl != NULL) {
        if (strncmp(buf, header, strlen(header)) != 0) {
            rc = us_err_set(err, US_EINVAL, "%s: journal was written by a different command "
                            "(input, model or decoding options differ); remove it and %s to "
                            "start over, or use another --output", j->journal_path, out_path);
            goto done;
        }
        j->journal_fd = open(j->journal_path, O_WRONLY | O_APPEND);
        if (j->journal_fd < 0) {
            rc = us_err_set(err, US_EIO, "%s: cannot open for append: %s", j->journal_path,
                            strerror(errno));
            goto done;
        }
        if ((rc = load_records(j, set, buf, len, (size_t)(nl - buf) + 1, err)) != US_OK)
            goto done;
        j->n_resumed = j->n_done;
    } else if (rc == US_OK || rc == US_ENOTFOUND) {
        /* No journal, or only a torn header (no record can follow it). */
        if (rc == US_ENOTFOUND && access(out_path, F_OK) == 0) {
            rc = us_err_set(err, US_EEXIST, "%s: exists but has no journal %s; remove it or "
                            "use another --output", out_path, j->journal_path);
            goto done;
        }
        us_durable_file f;
        if ((rc = us_durable_open(&f, j->journal_path, true, err)) != US_OK)
            goto done;
        if ((rc = us_durable_write(&f, header, strlen(header), err)) != US_OK) {
            us_durable_abort(&f);
            goto done;
        }
        if ((rc = us_durable_commit(&f, err)) != US_OK)
            goto done;
        j->journal_fd = open(j->journal_path, O_WRONLY | O_APPEND);
        if (j->journal_fd < 0) {
            rc = us_err_set(err, US_EIO, "%s: cannot open for append: %s", j->journal_path,
                            strerror(errno));
            goto done;
        }
    } else {
        goto done;
    }
    rc = rebuild_output(j, err);
done:
    free(buf);
    if (rc != US_OK)
        us_journal_close(j);
    return rc;
}

int us_journal_finish(us_journal *j, size_t index, const char *line, us_err *err)
{
    if (index >= j->n || j->done[index])
        return us_err_set(err, US_EINVAL, "journal: sequence %zu finished twice or out of range",
                          index);
    size_t n = strlen(line);
    char *rec = malloc(n + 2);
    if (rec == NULL)
        return us_err_set(err, US_ENOMEM, "journal: out of memory");
    memcpy(rec, line, n);
    rec[n] = '\n';
    rec[n + 1] = '\0';
    int rc = write_fsync(j->journal_fd, j->journal_path, rec, n + 1, err);
    if (rc != US_OK) {
        free(rec);
        return rc;
    }
    rec[n] = '\0';
    j->lines[index] = rec;
    j->done[index] = 1;
    j->n_done++;
    while (j->next_commit < j->n && j->done[j->next_commit]) {
        char *l = j->lines[j->next_commit];
        size_t ln = strlen(l);
        l[ln] = '\n';   /* every line buffer has room: allocated with length + 2 */
        rc = write_fsync(j->out_fd, j->out_path, l, ln + 1, err);
        if (rc != US_OK) {
            l[ln] = '\0';
            return rc;
        }
        free(l);
        j->lines[j->next_commit] = NULL;
        j->next_commit++;
    }
    return US_OK;
}

void us_journal_close(us_journal *j)
{
    if (j->journal_fd >= 0)
        close(j->journal_fd);
    if (j->out_fd >= 0)
        close(j->out_fd);
    if (j->lock_fd >= 0)
        close(j->lock_fd);   /* releases the lock */
    for (size_t i = 0; j->lines && i < j->n; i++)
        free(j->lines[i]);
    free(j->lines);
    free(j->done);
    free(j->journal_path);
    memset(j, 0, sizeof *j);
    j->journal_fd = j->out_fd = j->lock_fd = -1;
}
