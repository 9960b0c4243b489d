/* test_shmem.c — regions other processes map (proto/shmem.h): a process
 * maps another's region by pid and fd and sees its bytes, including bytes
 * written after the mapping was made. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/shmem.h"

static void test_alloc_zeroed_and_free(void **state)
{
    (void)state;
    us_shmem m;
    us_err e = {0};
    assert_int_equal(us_shmem_alloc(&m, 0, "t", &e), US_EINVAL);
    assert_int_equal(us_shmem_alloc(&m, 10000, "t", &e), US_OK);
    assert_non_null(m.base);
    assert_true(m.fd >= 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(m.base[i], 0);
    us_shmem_free(&m);
    assert_null(m.base);
    us_shmem_free(&m);          /* twice: a freed region is a no-op */
}

/* The parent maps a region its child allocated (an ancestor may ptrace its
 * descendants even under Yama ptrace_scope 1), checks the child's bytes,
 * then sees a byte the child rewrites after the mapping was made. */
static void test_peer_maps_region(void **state)
{
    (void)state;
    const uint64_t bytes = 3 * 4096 + 17;
    int up[2], down[2];
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        us_shmem m;
        if (us_shmem_alloc(&m, bytes, "t", NULL) != US_OK || m.fd < 0)
            _exit(1);
        for (uint64_t i = 0; i < bytes; i++)
            m.base[i] = (uint8_t)(i * 7 + 1);
        int fd = m.fd;
        uint8_t go;
        if (write(up[1], &fd, sizeof fd) != sizeof fd || read(down[0], &go, 1) != 1)
            _exit(2);
        m.base[5000] = 0xAB;
        if (write(up[1], &fd, sizeof fd) != sizeof fd || read(down[0], &go, 1) != 1)
            _exit(3);
        _exit(0);
    }
    int fd = -1;
    uint8_t go = 1;
    assert_int_equal(read(up[0], &fd, sizeof fd), sizeof fd);
    const uint8_t *p = NULL;
    us_err e = {0};
    int rc = us_shmem_map_peer(&p, child, fd, bytes, &e);
    if (rc != US_OK)
        fail_msg("%s", e.msg);
    for (uint64_t i = 0; i < bytes; i++)
        if (p[i] != (uint8_t)(i * 7 + 1))
            fail_msg("byte %llu: %u", (unsigned long long)i, p[i]);
    assert_int_equal(write(down[1], &go, 1), 1);
    assert_int_equal(read(up[0], &fd, sizeof fd), sizeof fd);
    assert_int_equal(p[5000], 0xAB);
    assert_int_equal(write(down[1], &go, 1), 1);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    us_shmem_unmap_peer(p, bytes);
}

static void test_bad_peer_fd(void **state)
{
    (void)state;
    const uint8_t *p = (const uint8_t *)1;
    us_err e = {0};
    assert_int_equal(us_shmem_map_peer(&p, getpid(), 987654, 4096, &e), US_EIO);
    assert_null(p);
    assert_non_null(strstr(e.msg, "pidfd_getfd"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_zeroed_and_free),
        cmocka_unit_test(test_peer_maps_region),
        cmocka_unit_test(test_bad_peer_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
