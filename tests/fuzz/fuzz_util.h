/*
 * fuzz_util.h — shared helpers of the libFuzzer harnesses (tests/fuzz/).
 *
 * Some parsers only read from paths (a store directory, a journal next to an
 * output file, a tensor file), so a harness writes each input to a file in a
 * private temp directory first: on /dev/shm when it exists, so the millions
 * of small writes (and the journal's fsyncs) never reach a disk. The
 * directory is removed at exit.
 *
 * FUZZ_CHECK turns a broken contract into a crash libFuzzer records, e.g. an
 * error return without a message: the README promises every error names the
 * thing at fault, and a parser that forgets is a bug too.
 */
#ifndef US_FUZZ_UTIL_H
#define US_FUZZ_UTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/us_status.h"

#define FUZZ_CHECK(cond, ...)                                                   \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz check failed: %s (%s:%d): ", #cond, __FILE__,  \
                    __LINE__);                                                  \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* The error contract: a failure returns a negative code, records the same
 * code and a message. */
static inline void fuzz_check_err(int rc, const us_err *err)
{
    if (rc == US_OK)
        return;
    FUZZ_CHECK(rc < 0, "positive return code %d", rc);
    FUZZ_CHECK(err->code == rc, "returned %d but recorded %d (%s)", rc, err->code, err->msg);
    FUZZ_CHECK(err->msg[0] != '\0', "error %d without a message", rc);
}

static char fuzz_dir_path[256];

static int fuzz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void fuzz_rm_dir(void)
{
    if (fuzz_dir_path[0])
        nftw(fuzz_dir_path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The harness's private directory, created on first use. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0])
        return fuzz_dir_path;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/us-fuzz-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(fuzz_dir_path) == NULL) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_rm_dir);
    return fuzz_dir_path;
}

/* Writes bytes (optionally followed by a tail) to path, replacing it. */
static inline void fuzz_write_file2(const char *path, const void *a, size_t na,
                                    const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) ||
        fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static inline void fuzz_write_file(const char *path, const void *data, size_t n)
{
    fuzz_write_file2(path, data, n, NULL, 0);
}

#endif
