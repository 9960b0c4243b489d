/*
 * shmem.h — memory that other processes on this host can map: the backing
 * of tables that coordinators read one-sided by plain loads.
 *
 * A region is a memfd mapped MAP_SHARED: its owner writes it like any
 * memory; a peer that may ptrace the owner (the permission process_vm_readv
 * needs) duplicates the owner's fd with pidfd_getfd and maps it read-only,
 * so a one-sided read of a row is a memcpy, with no system call and no page
 * pinning per row (process_vm_readv pins every remote page: ~0.4 us per
 * 512-byte row on this VM, README bench-lookup). Where memfd is refused
 * the region is private anonymous memory (fd -1): usable, not shareable.
 */
#ifndef US_SHMEM_H
#define US_SHMEM_H

#include <stdint.h>

#include "kernels/us_status.h"

typedef struct us_shmem {
    uint8_t *base;          /* bytes, zero-filled, page aligned */
    uint64_t bytes;
    int      fd;            /* memfd, or -1 when the region is private */
} us_shmem;

/* Allocates bytes (> 0) named `name` (shown in /proc/PID/maps).
 * Returns: US_OK; US_ENOMEM when neither a memfd nor anonymous memory of
 * that size can be mapped. */
int us_shmem_alloc(us_shmem *m, uint64_t bytes, const char *name, us_err *err);

/* Unmaps and closes. Returns: nothing; safe on a zeroed or freed region. */
void us_shmem_free(us_shmem *m);

/* Maps `bytes` of the region behind fd number `fd` of process `pid`
 * read-only into this process.
 * Returns: US_OK with *out set; US_EIO naming the step that failed (no such
 * process, no permission, not a mappable fd). */
int us_shmem_map_peer(const uint8_t **out, int pid, int fd, uint64_t bytes, us_err *err);

/* Unmaps a region from us_shmem_map_peer. Returns: nothing. */
void us_shmem_unmap_peer(const uint8_t *p, uint64_t bytes);

#endif
