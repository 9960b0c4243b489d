/* shmem.c — memfd regions other processes can map (see shmem.h). */
#include "proto/shmem.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int us_shmem_alloc(us_shmem *m, uint64_t bytes, const char *name, us_err *err)
{
    memset(m, 0, sizeof *m);
    m->fd = -1;
    if (bytes == 0)
        return us_err_set(err, US_EINVAL, "shared region '%s': 0 bytes", name);
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)bytes) == 0) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            *m = (us_shmem){ .base = p, .bytes = bytes, .fd = fd };
            return US_OK;
        }
    }
    if (fd >= 0)
        close(fd);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return us_err_set(err, US_ENOMEM, "shared region '%s': %" PRIu64 " bytes: %s", name,
                          bytes, strerror(errno));
    *m = (us_shmem){ .base = p, .bytes = bytes, .fd = -1 };
    return US_OK;
}

void us_shmem_free(us_shmem *m)
{
    if (m->base != NULL) {     /* fd means something only with a mapping */
        munmap(m->base, m->bytes);
        if (m->fd >= 0)
            close(m->fd);
    }
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

int us_shmem_map_peer(const uint8_t **out, int pid, int fd, uint64_t bytes, us_err *err)
{
    *out = NULL;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return us_err_set(err, US_EIO, "shared region of pid %d: pidfd_open: %s", pid,
                          strerror(errno));
    int mine = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int saved = errno;
    close(pidfd);
    if (mine < 0)
        return us_err_set(err, US_EIO, "shared region of pid %d: pidfd_getfd of fd %d: %s",
                          pid, fd, strerror(saved));
    /* populated now: a first touch costs a page fault (~7 us in this VM,
     * rowcache.c), and every read would otherwise be one */
    void *p = mmap(NULL, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, mine, 0);
    saved = errno;
    close(mine);
    if (p == MAP_FAILED)
        return us_err_set(err, US_EIO, "shared region of pid %d: mmap of %" PRIu64 " bytes "
                          "of fd %d: %s", pid, bytes, fd, strerror(saved));
    *out = p;
    return US_OK;
}

void us_shmem_unmap_peer(const uint8_t *p, uint64_t bytes)
{
    if (p != NULL)
        munmap((void *)(uintptr_t)p, bytes);
}
