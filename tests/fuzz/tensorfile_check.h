/*
 * tensorfile_check.h — what the npy and safetensors harnesses both do with an
 * input: open it as a tensor file, then use every tensor the way import does
 * (find by name, read all rows and a last-row range), checking the header's
 * promises: each tensor lies inside the file and its sizes agree.
 */
#ifndef US_FUZZ_TENSORFILE_CHECK_H
#define US_FUZZ_TENSORFILE_CHECK_H

#include "shard/tensorfile.h"
#include "tests/fuzz/fuzz_util.h"

static inline void fuzz_tensorfile(const char *name, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    fuzz_write_file(path, data, size);
    us_tensor_file *f = NULL;
    us_err err = {0};
    int rc = us_tf_open(path, &f, &err);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return;
    size_t n = us_tf_count(f);
    for (size_t i = 0; i < n; i++) {
        const us_tensor_info *t = us_tf_tensor(f, i);
        FUZZ_CHECK(t != NULL && t->name != NULL, "tensor %zu missing", i);
        FUZZ_CHECK(t->offset_bytes <= size && t->nbytes <= size - t->offset_bytes,
                   "tensor '%s' [%llu, +%llu) outside a %zu-byte file", t->name,
                   (unsigned long long)t->offset_bytes, (unsigned long long)t->nbytes, size);
        FUZZ_CHECK(t->rows == 0 || t->row_bytes * t->rows == t->nbytes,
                   "tensor '%s': %llu rows x %llu bytes != %llu", t->name,
                   (unsigned long long)t->rows, (unsigned long long)t->row_bytes,
                   (unsigned long long)t->nbytes);
        const us_tensor_info *found = NULL;
        us_err ferr = {0};
        rc = us_tf_find(f, t->name, &found, &ferr);
        fuzz_check_err(rc, &ferr);
        /* The data lies inside the input, so reading it all is bounded. */
        void *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (buf == NULL)
            abort();
        us_err rerr = {0};
        rc = us_tf_read(f, t, buf, t->nbytes, &rerr);
        fuzz_check_err(rc, &rerr);
        FUZZ_CHECK(rc == US_OK, "reading tensor '%s' of a valid header: %s", t->name, rerr.msg);
        if (t->rows > 0) {
            rc = us_tf_read_rows(f, t, t->rows - 1, 1, buf, t->nbytes, &rerr);
            FUZZ_CHECK(rc == US_OK, "last row of '%s': %s", t->name, rerr.msg);
            rc = us_tf_read_rows(f, t, t->rows, 1, buf, t->nbytes, &rerr);
            FUZZ_CHECK(rc == US_ERANGE, "row past the end of '%s' gave %d", t->name, rc);
        }
        free(buf);
    }
    const us_tensor_info *only = NULL;
    us_err ferr = {0};
    rc = us_tf_find(f, NULL, &only, &ferr);
    fuzz_check_err(rc, &ferr);
    FUZZ_CHECK((rc == US_OK) == (n == 1), "find(NULL) gave %d for %zu tensors", rc, n);
    us_tf_close(f);
}

#endif
