/*
 * test_durable.c — crash-safe writes: the target changes only at commit; a
 * full disk (RLIMIT_FSIZE in a child process) is a clean error that leaves
 * the old file intact and no temp file; pread/pwrite loops and their errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/tmpdir.h"

#include "shard/durable.h"

#define tmpdir us_test_tmpdir

static int count_entries(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void read_back(const char *path, char *buf, size_t cap, size_t *n)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t r = read(fd, buf, cap);
    assert_true(r >= 0);
    *n = (size_t)r;
    close(fd);
}

static void test_commit_replaces_atomically(void **state)
{
    (void)state;
    us_err err;
    char path[512], buf[64];
    size_t n;
    snprintf(path, sizeof path, "%s/f.bin", tmpdir);
    us_durable_file f;
    assert_int_equal(us_durable_open(&f, path, false, &err), US_OK);
    assert_int_equal(us_durable_write(&f, "first", 5, &err), US_OK);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);            /* invisible until commit */
    assert_int_equal(count_entries(), 1);                /* only the temp file */
    assert_int_equal(us_durable_commit(&f, &err), US_OK);
    read_back(path, buf, sizeof buf, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "first", 5);
    /* no overwrite unless asked */
    assert_int_equal(us_durable_open(&f, path, false, &err), US_EEXIST);
    assert_non_null(strstr(err.msg, "f.bin"));
    /* abort: old content stays, temp gone */
    assert_int_equal(us_durable_open(&f, path, true, &err), US_OK);
    assert_int_equal(us_durable_write(&f, "second!", 7, &err), US_OK);
    assert_int_equal(us_durable_write_zeros(&f, 10000, &err), US_OK);
    assert_int_equal(f.bytes_written, 10007);
    us_durable_abort(&f);
    read_back(path, buf, sizeof buf, &n);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(count_entries(), 1);
    us_durable_abort(&f);                                /* twice is harmless */
    /* overwrite with commit */
    assert_int_equal(us_durable_open(&f, path, true, &err), US_OK);
    assert_int_equal(us_durable_write(&f, "second", 6, &err), US_OK);
    assert_int_equal(us_durable_commit(&f, &err), US_OK);
    read_back(path, buf, sizeof buf, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "second", 6);
    /* a directory that does not exist */
    snprintf(path, sizeof path, "%s/no/such/dir/f", tmpdir);
    assert_int_equal(us_durable_open(&f, path, false, &err), US_EIO);
    assert_non_null(strstr(err.msg, "no/such/dir"));
    assert_int_equal(us_fsync_dir("/definitely/not/here", &err), US_EIO);
}

/* In a child: RLIMIT_FSIZE 64 KiB, write 1 MiB. The child reports the
 * error code and message through a pipe. */
static void test_disk_full_is_clean(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/big.bin", tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(write(fd, "old", 3), 3);
    close(fd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        us_durable_ignore_sigxfsz();
        struct rlimit rl = { 64 * 1024, 64 * 1024 };
        us_err err = {0};
        int rc = setrlimit(RLIMIT_FSIZE, &rl) == 0 ? US_OK : -100;
        us_durable_file f;
        if (rc == US_OK)
            rc = us_durable_open(&f, path, true, &err);
        static char block[1 << 20];
        if (rc == US_OK && (rc = us_durable_write(&f, block, sizeof block, &err)) != US_OK)
            us_durable_abort(&f);
        else if (rc == US_OK)
            rc = us_durable_commit(&f, &err);
        dprintf(p[1], "%d %s", rc, err.msg);
        close(p[1]);
        _exit(0);
    }
    close(p[1]);
    char msg[600] = "";
    ssize_t n = read(p[0], msg, sizeof msg - 1);
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);   /* not killed by SIGXFSZ */
    assert_true(n > 0);
    msg[n] = '\0';
    if (strncmp(msg, "-100", 4) == 0)
        skip();   /* setrlimit refused: nothing to test here */
    assert_int_equal(atoi(msg), US_EIO);
    assert_non_null(strstr(msg, "file size limit reached"));
    assert_non_null(strstr(msg, "big.bin"));
    char buf[16];
    size_t len;
    read_back(path, buf, sizeof buf, &len);
    assert_int_equal(len, 3);                                    /* old file intact */
    assert_memory_equal(buf, "old", 3);
    assert_int_equal(count_entries(), 2);                         /* f.bin, big.bin: no temp */
}

static void test_pread_pwrite(void **state)
{
    (void)state;
    us_err err;
    char path[512];
    snprintf(path, sizeof path, "%s/p.bin", tmpdir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(us_pwrite_all(fd, "abcdef", 6, 100, path, &err), US_OK);
    char buf[8];
    assert_int_equal(us_pread_all(fd, buf, 6, 100, path, &err), US_OK);
    assert_memory_equal(buf, "abcdef", 6);
    assert_int_equal(us_pread_all(fd, buf, 8, 100, path, &err), US_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_non_null(strstr(err.msg, "p.bin"));
    close(fd);
    assert_int_equal(us_pread_all(fd, buf, 1, 0, path, &err), US_EIO);   /* closed fd */
}

static void test_read_file(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/whole.txt", tmpdir);
    /* 200000 bytes: several growth steps of the reader's buffer */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 200000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    char *buf = NULL;
    size_t len = 0;
    us_err e = {0};
    assert_int_equal(us_read_file(path, 200000, "text", &buf, &len, &e), US_OK);
    assert_int_equal(len, 200000);
    assert_int_equal(buf[199999], 'a' + 199999 % 26);
    assert_int_equal(buf[200000], '\0');
    free(buf);
    assert_int_equal(us_read_file(path, 199999, "text", &buf, &len, &e), US_EINVAL);
    assert_null(buf);
    assert_non_null(strstr(e.msg, "text larger than 199999 bytes"));
    snprintf(path, sizeof path, "%s/missing.txt", tmpdir);
    assert_int_equal(us_read_file(path, 10, "text", &buf, &len, &e), US_ENOTFOUND);
    assert_non_null(strstr(e.msg, "missing.txt: cannot open"));
    snprintf(path, sizeof path, "%s/empty.txt", tmpdir);
    fclose(fopen(path, "wb"));
    assert_int_equal(us_read_file(path, 10, "text", &buf, &len, &e), US_OK);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_replaces_atomically),
        cmocka_unit_test(test_disk_full_is_clean),
        cmocka_unit_test(test_pread_pwrite),
        cmocka_unit_test(test_read_file),
    };
    return cmocka_run_group_tests(tests, us_test_tmpdir_setup, us_test_tmpdir_teardown);
}
